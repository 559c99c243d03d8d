"""The bad-input corpus (tests/data/bad_inputs/): every malformed input gets a named error or quarantine reason.

Table-driven: each case says which dataset the file feeds and what must happen - the batch rejected whole (with
source, file, row and field named) or the bad rows quarantined with a reason - and for every case
``accepted + quarantined == rows read`` and nothing half-loaded stays behind after a rejection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import AS_OF
from ingest_support import ledger_fingerprint
from sqlalchemy import func, select

from writeoffs.errors import InputError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.ingest.tables import STAGING, ingest_batches, ingest_quarantine

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"


@dataclass(frozen=True)
class Reject:
    contains: str
    row: int | None = None
    field: str | None = None


@dataclass(frozen=True)
class Quarantine:
    reasons: dict[str, int]
    read: int


CASES: list[tuple[str, str, object]] = [
    ("missing_column.csv", "invoices", Reject("missing", row=1, field="open_balance")),
    ("renamed_column.csv", "invoices", Reject("'Invoice No'", row=1, field="invoice_ref")),
    ("duplicate_header.csv", "invoices", Reject("duplicate column header 'Amount'", row=1, field="Amount")),
    ("empty.csv", "invoices", Reject("file is empty", row=1)),
    ("header_only.csv", "invoices", Reject("no data rows", row=2)),
    ("wrong_delimiter.csv", "invoices", Reject("is the delimiter", row=1)),
    ("wrong_encoding_latin1.csv", "invoices", Reject("not valid utf-8-sig text", row=3)),
    ("non_numeric_amount.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("negative_amount.csv", "invoices", Quarantine({"negative_amount": 1}, 2)),
    ("nan_amount.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("impossible_date.csv", "invoices", Quarantine({"invalid_date": 1}, 2)),
    ("iso_date_in_us_file.csv", "invoices", Quarantine({"invalid_date": 1}, 2)),
    ("two_digit_year.csv", "invoices", Quarantine({"invalid_date": 1}, 2)),
    ("unknown_currency.csv", "invoices", Quarantine({"unknown_currency": 1}, 2)),
    ("duplicate_invoice_ids.csv", "invoices", Quarantine({"duplicate_key": 2}, 3)),
    ("balance_above_amount.csv", "invoices", Quarantine({"balance_above_amount": 1}, 2)),
    ("missing_invoice_no.csv", "invoices", Quarantine({"missing_value": 1}, 2)),
    ("bad_flag.csv", "invoices", Quarantine({"invalid_flag": 1}, 2)),
    ("due_before_invoice.csv", "invoices", Quarantine({"due_before_invoice": 1}, 2)),
    ("unknown_entity.csv", "invoices", Quarantine({"unknown_entity": 1}, 2)),
    ("missing_fx_rate.csv", "invoices", Quarantine({"missing_fx_rate": 1}, 2)),
    ("zero_fx_rate.csv", "invoices", Quarantine({"invalid_fx_rate": 1}, 2)),
    ("fx_rate_on_functional_currency.csv", "invoices", Quarantine({"invalid_fx_rate": 1}, 2)),
    ("text_in_fx_rate.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("too_many_decimals.csv", "invoices", Quarantine({"too_many_decimals": 1}, 2)),
    ("usd_three_decimals.csv", "invoices", Quarantine({"too_many_decimals": 1}, 2)),
    ("jpy_with_decimals.csv", "invoices", Quarantine({"too_many_decimals": 1}, 2)),
    ("kwd_three_decimals_ok.csv", "invoices", Quarantine({}, 2)),
    ("amount_above_max.csv", "invoices", Quarantine({"amount_too_large": 1}, 2)),
    ("european_number_format.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("invoice_no_too_long.csv", "invoices", Quarantine({"too_long": 1}, 2)),
    ("several_bad_rows.csv", "invoices", Quarantine({"not_a_number": 1, "unknown_currency": 1, "invalid_date": 1}, 5)),
    ("truncated.csv", "invoices", Quarantine({"field_count": 1}, 3)),
    ("extra_field_in_row.csv", "invoices", Quarantine({"field_count": 1}, 3)),
    ("unterminated_quote.csv", "invoices", Quarantine({"field_count": 1}, 3)),
    ("payment_applied_above_amount.csv", "payments", Quarantine({"applied_above_amount": 1}, 1)),
    ("payment_inconsistent_rows.csv", "payments", Quarantine({"inconsistent_payment": 2}, 2)),
    ("payment_zero_amount.csv", "payments", Quarantine({"non_positive_amount": 1}, 1)),
    ("payment_applied_too_many_decimals.csv", "payments", Quarantine({"too_many_decimals": 1}, 1)),
    ("activity_unknown_type.csv", "activities", Quarantine({"unknown_activity_type": 1}, 2)),
    ("activity_end_before_start.csv", "activities", Quarantine({"end_before_start": 1}, 2)),
    # issue 15: every physical record accounted for
    ("stray_quote_swallows_rows.csv", "invoices", Reject("stray quote", row=7)),
    ("quoted_line_break.csv", "invoices", Reject("newlines_in_values", row=3)),
    ("cr_only_line_endings.csv", "invoices", Reject("CR-only", row=1)),
    ("nul_byte_in_field.csv", "invoices", Reject("NUL byte", row=3, field="Description")),
    ("utf16_export.csv", "invoices", Reject("UTF-16", row=1)),
    ("blank_lines.csv", "invoices", Quarantine({}, 2)),
    ("crlf_line_endings.csv", "invoices", Quarantine({}, 2)),
    ("trailing_delimiter.csv", "invoices", Quarantine({"field_count": 1}, 2)),
    ("escaped_quotes_ok.csv", "invoices", Quarantine({}, 2)),
    # explicit number and date formats
    ("decimal_comma_ambiguous.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("year_0023.csv", "invoices", Quarantine({"implausible_date": 1}, 2)),
    ("dispute_since_year_0023.csv", "invoices", Quarantine({"implausible_date": 1}, 2)),
    ("due_date_far_future.csv", "invoices", Quarantine({"implausible_date": 1}, 2)),
    ("padded_amount.csv", "invoices", Quarantine({}, 2)),
    ("currency_symbol_in_amount.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    # The erp_csv source writes negatives as -12.34 (negative_style: leading_minus): other signs are ambiguous.
    ("parenthesised_negative.csv", "invoices", Quarantine({"ambiguous_sign": 1}, 2)),
    ("trailing_minus_amount.csv", "invoices", Quarantine({"ambiguous_sign": 1}, 2)),
    ("exponent_amount.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("misplaced_thousands.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("arabic_digits_amount.csv", "invoices", Quarantine({"not_a_number": 1}, 2)),
    ("date_with_time.csv", "invoices", Quarantine({"invalid_date": 1}, 2)),
    ("blank_required_field.csv", "invoices", Quarantine({"missing_value": 1}, 2)),
    ("zero_width_in_currency.csv", "invoices", Quarantine({"too_long": 1}, 2)),
    # hostile but well-formed text: accepted, stored literally (neutralised where people open it)
    ("huge_field.csv", "invoices", Quarantine({"too_long": 1}, 2)),
    ("formula_in_customer_name.csv", "invoices", Quarantine({}, 2)),
    ("markdown_link_in_name.csv", "invoices", Quarantine({}, 2)),
]


def corpus_config(dataset: str, file: str, mode: str = "quarantine", control: str | None = None):
    erp = source_config.load().source("erp_csv")
    datasets = {"invoices": {"file": "good_invoices.csv", "columns": dict(erp.datasets["invoices"].columns)}}
    datasets[dataset] = {"file": file, "columns": dict(erp.datasets[dataset].columns)}
    body = erp.model_dump(exclude={"name", "datasets", "location", "control_file"})
    body.update(location=str(CORPUS), on_bad_rows=mode, datasets=datasets, control_file=control)
    return source_config.parse(
        {
            "version": "test",
            "entities": {
                "US01": {"name": "US", "functional_currency": "USD", "method": "direct"},
                "EU01": {"name": "EU", "functional_currency": "EUR", "method": "allowance"},
            },
            "sources": {"corpus": body},
        }
    )


def staged_rows(engine) -> int:
    with engine.connect() as conn:
        return sum(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in STAGING.values())


@pytest.fixture
def sqlite_ledger(make_ledger):
    return make_ledger("sqlite")


def test_corpus_has_at_least_60_cases_and_every_file_is_used() -> None:
    assert len(CASES) >= 60
    files = {p.name for p in CORPUS.iterdir() if p.suffix == ".csv"} - {"good_invoices.csv"}
    assert files == {c[0] for c in CASES}


@pytest.mark.parametrize(("file", "dataset", "expect"), CASES, ids=[c[0] for c in CASES])
def test_corpus_case(ledger, file: str, dataset: str, expect: object) -> None:
    """Both databases: accepted, quarantined with file/row/field, or rejected with one clear line; the count
    identity holds (accepted + quarantined = records read = physical records); a rejection changes no ledger table."""
    sqlite_ledger = ledger  # the body predates the PostgreSQL run; the name stays
    cfg = corpus_config(dataset, file)
    src = build_source(cfg.source("corpus"))
    if isinstance(expect, Reject):
        before = ledger_fingerprint(ledger)
        with pytest.raises(InputError) as err:
            stage(sqlite_ledger, cfg, src, AS_OF)
        e = err.value
        assert "\n" not in str(e) and len(str(e)) <= 1200, str(e)
        assert ledger_fingerprint(ledger) == before
        assert expect.contains in str(e), str(e)
        assert e.source == "corpus" and e.file == file
        if expect.row is not None:
            assert e.row == expect.row, str(e)
        if expect.field is not None:
            assert e.field == expect.field, str(e)
        # Nothing half-loaded: no staged rows, no batch, no quarantine from the failed attempt.
        assert staged_rows(sqlite_ledger) == 0
        with sqlite_ledger.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ingest_batches)).scalar_one() == 0
        return
    assert isinstance(expect, Quarantine)
    summary = stage(sqlite_ledger, cfg, src, AS_OF)
    ds = summary["datasets"][dataset]
    assert ds["read"] == expect.read
    assert ds["accepted"] + ds["quarantined"] == ds["read"] == ds["records"]
    assert summary["quarantine_reasons"] == expect.reasons
    with sqlite_ledger.connect() as conn:
        rows = conn.execute(select(ingest_quarantine).where(ingest_quarantine.c.dataset == dataset)).all()
    assert len(rows) == sum(expect.reasons.values())
    for r in rows:
        # Every quarantined row names its file and row; all but unsplittable records also name the field.
        assert r.source_file == file and r.source_row is not None and r.source_row >= 2
        assert r.field is not None or r.reason == "field_count"
        assert r.raw is None or isinstance(json.loads(r.raw), dict)  # the stored record is valid JSON
        assert len(r.message) <= 500


@pytest.mark.parametrize(
    ("file", "dataset", "row", "field"),
    [
        ("non_numeric_amount.csv", "invoices", 3, "amount"),
        ("usd_three_decimals.csv", "invoices", 3, "amount"),
        ("jpy_with_decimals.csv", "invoices", 3, "open_balance"),
        ("amount_above_max.csv", "invoices", 3, "amount"),
        ("payment_applied_too_many_decimals.csv", "payments", 2, "applied_amount"),
        ("impossible_date.csv", "invoices", 3, "invoice_date"),
        ("duplicate_invoice_ids.csv", "invoices", 3, "invoice_ref"),
        ("truncated.csv", "invoices", 4, None),
        ("activity_unknown_type.csv", "activities", 3, "activity_type"),
    ],
)
def test_reject_mode_rejects_whole_batch_naming_the_first_bad_row(sqlite_ledger, file, dataset, row, field) -> None:
    cfg = corpus_config(dataset, file, mode="reject")
    with pytest.raises(InputError) as err:
        stage(sqlite_ledger, cfg, build_source(cfg.source("corpus")), AS_OF)
    assert err.value.file == file and err.value.row == row and err.value.field == field, str(err.value)
    assert staged_rows(sqlite_ledger) == 0


def test_control_file_for_another_day_is_refused(sqlite_ledger) -> None:
    cfg = corpus_config("invoices", "good_invoices.csv", control="control_wrong_as_of.json")
    with pytest.raises(InputError, match="not the business date") as err:
        stage(sqlite_ledger, cfg, build_source(cfg.source("corpus")), AS_OF)
    assert err.value.field == "as_of"


def test_rejection_is_audited_and_previous_good_batch_survives(sqlite_ledger) -> None:
    good = corpus_config("invoices", "good_invoices.csv")
    first = stage(sqlite_ledger, good, build_source(good.source("corpus")), AS_OF)
    assert first["rows_accepted"] == 2
    bad = corpus_config("invoices", "missing_column.csv")
    bad_datasets = bad.source("corpus").datasets
    assert bad_datasets["invoices"].file == "missing_column.csv"
    with pytest.raises(InputError):
        stage(sqlite_ledger, bad, build_source(bad.source("corpus")), AS_OF)
    assert staged_rows(sqlite_ledger) == 2  # the previous load of (corpus, AS_OF) is intact
    from writeoffs.db.schema import audit_log

    with sqlite_ledger.connect() as conn:
        actions = list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())
    assert actions == ["ingest.staged", "ingest.rejected"]
