"""Validation of staged batches and of the aging snapshot, on SQLite and PostgreSQL, with real GX runs.

Each row-level check is failed by exactly one planted fault at a known source row, and passed by a clean batch;
each blocking check is failed and passed; GX's unexpected count must equal the rows the SQL predicate quarantines.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests import factories
from tests.integration._validation_data import (
    AS_OF,
    activity_row,
    invoice_row,
    payment_row,
    quarantined,
    stage,
    staged_rows,
)
from writeoffs import ledger as gl
from writeoffs.db.schema import aging_snapshots
from writeoffs.journal import JournalEntry, JournalLine
from writeoffs.validation.checks import Tables
from writeoffs.validation.config import parse
from writeoffs.validation.run import ValidationBlocked, validate_aging, validate_batches

#: No share guard: these tests plant many faults in tiny batches on purpose.
LENIENT = parse({"max_quarantined_fraction": "1"})


@pytest.fixture(autouse=True)
def _reports(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))


def _faulty(conn) -> int:
    """Invoices rows 2..11 (source rows), one fault per row from row 3 on; payments/activities likewise."""
    factories.entity(conn)
    factories.customer(conn, ref="C-LEDGER")  # known only to the ledger, not on any staged invoice
    inv = [invoice_row(i) for i in range(1, 12)]  # source rows 2..12
    inv[1]["open_balance"] = Decimal("999")  # row 3: open balance above amount
    inv[2]["currency"] = "XXX"  # row 4: not ISO 4217
    inv[3]["invoice_date"] = AS_OF + timedelta(days=1)  # row 5: booked after the as-of date
    inv[3]["due_date"] = AS_OF + timedelta(days=31)
    inv[4]["invoice_ref"] = inv[5]["invoice_ref"]  # rows 6 and 7: duplicate key (both copies)
    inv[6]["amount"] = Decimal("-5")  # row 8: negative amount (open balance 0: only amount fails)
    inv[6]["open_balance"] = Decimal("-10")  # ... and negative open balance
    inv[7]["due_date"] = inv[7]["invoice_date"] - timedelta(days=1)  # row 9: due before invoice date
    inv[8]["disputed"] = True
    inv[8]["dispute_since"] = AS_OF + timedelta(days=2)  # row 10: dispute starts after the as-of date
    pay = [payment_row(i) for i in range(1, 7)]  # source rows 2..7
    pay[0]["customer_ref"] = "C-NOBODY"  # row 2: unknown customer
    pay[1]["customer_ref"] = "C-LEDGER"  # row 3: known to the ledger only: fine
    pay[2]["applied_amount"] = Decimal("25.00")  # row 4: applies more than paid
    pay[3]["amount"] = Decimal("-1.00")  # row 5: negative payment (applied 20 > -1 too)
    pay[4]["applied_amount"] = Decimal("-3.00")  # row 6: negative application
    pay[5]["payment_date"] = AS_OF + timedelta(days=1)  # row 7: paid after the as-of date
    pay[5]["currency"] = "ABC"  # ... and not ISO
    act = [activity_row(i) for i in range(1, 6)]  # source rows 2..6
    act[0]["customer_ref"] = "C-NOBODY"  # row 2
    act[1]["activity_date"] = AS_OF + timedelta(days=1)  # row 3: after as-of
    act[2]["activity_type"] = "agency_placement"
    act[2]["end_date"] = act[2]["activity_date"] - timedelta(days=1)  # row 4: ends before it starts
    act[3]["activity_type"] = "agency_placement"
    act[3]["end_date"] = AS_OF + timedelta(days=30)  # row 5: end after as-of
    return stage(conn, invoices=inv, payments=pay, activities=act)


EXPECTED = [
    ("activities", "customer_known", 2),
    ("activities", "end_not_before_start", 4),
    ("activities", "not_after_as_of.activity_date", 3),
    ("activities", "not_after_as_of.end_date", 5),
    ("invoices", "amount_nonnegative", 8),
    ("invoices", "currency_iso4217", 4),
    ("invoices", "due_not_before_invoice_date", 9),
    ("invoices", "not_after_as_of.dispute_since", 10),
    ("invoices", "not_after_as_of.invoice_date", 5),
    ("invoices", "open_balance_nonnegative", 8),
    ("invoices", "open_balance_within_amount", 3),
    ("invoices", "unique_invoice", 6),
    ("invoices", "unique_invoice", 7),
    ("payments", "amount_nonnegative", 5),
    ("payments", "applied_nonnegative", 6),
    ("payments", "applied_within_amount", 4),
    ("payments", "applied_within_amount", 5),
    ("payments", "currency_iso4217", 7),
    ("payments", "customer_known", 2),
    ("payments", "not_after_as_of.payment_date", 7),
]


def test_warnings_quarantine_exactly_the_offending_rows(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _faulty(conn)
    report = validate_batches(ledger, [batch], as_of=AS_OF, run_key="t1", config=LENIENT)

    assert quarantined(ledger, batch) == sorted(EXPECTED)
    # Quarantined rows left staging; the rest stays for the merge.
    assert staged_rows(ledger, "stg_invoices", batch) == [2, 11, 12]
    assert staged_rows(ledger, "stg_payments", batch) == [3]
    assert staged_rows(ledger, "stg_activities", batch) == [6]
    # GX (evaluated counts) and the SQL predicates (quarantine) agree check by check.
    by_check = {f.check: f for t in report.targets for f in t.findings}
    expected_counts: dict[str, int] = {}
    for ds, reason, _ in EXPECTED:
        expected_counts[f"{ds}.{reason}"] = expected_counts.get(f"{ds}.{reason}", 0) + 1
    for name, n in expected_counts.items():
        assert not by_check[name].success, name
        assert by_check[name].unexpected_count == n, name
        assert by_check[name].quarantined == n, name
    failing = {f.check for t in report.targets for f in t.findings if not f.success}
    assert failing == set(expected_counts)
    assert report.blocking == []
    # The ingest batch's counts still add up, so the merge's staged-row check holds.
    with ledger.connect() as conn:
        b = conn.execute(text("SELECT rows_accepted, rows_quarantined, details FROM ingest_batches")).one()
        runs = conn.execute(
            text("SELECT suite, evaluated, failed, blocking_failed, rows_quarantined, report_path FROM validation_runs")
        ).all()
    details = json.loads(b.details)
    assert (details["invoices"]["accepted"], details["invoices"]["quarantined"]) == (3, 8)
    assert (details["payments"]["accepted"], details["payments"]["quarantined"]) == (1, 5)
    assert (b.rows_accepted, b.rows_quarantined) == (5, 17)
    runs_by_suite = {r.suite: r for r in runs}
    assert runs_by_suite["invoices"].rows_quarantined == 8
    assert runs_by_suite["invoices"].failed == 8 and runs_by_suite["invoices"].blocking_failed == 0
    assert runs_by_suite["invoices"].evaluated >= 10
    # The HTML report exists where the run says it is.
    page = Path(runs_by_suite["invoices"].report_path.removeprefix("file://"))
    assert page.is_file() and "open_balance_within_amount" in page.read_text()
    assert Path(report.docs_index).is_file()
    # The quarantined row keeps its amounts as numbers, exactly (SQLite stores them as integer ten-thousandths).
    with ledger.connect() as conn:
        raw = conn.execute(
            text(
                "SELECT raw FROM ingest_quarantine WHERE dataset = 'invoices' AND source_row = 3"
                " AND reason = 'open_balance_within_amount'"
            )
        ).scalar_one()
    row = json.loads(raw, parse_float=Decimal)
    assert (row["amount"], row["open_balance"]) == (Decimal("102"), Decimal("999"))


def _clean(conn, control: dict | None = None) -> int:
    factories.entity(conn)
    inv = [invoice_row(i) for i in range(1, 6)]
    inv[0]["disputed"] = True
    inv[0]["dispute_since"] = AS_OF  # on the as-of date itself: allowed
    pay = [payment_row(i) for i in range(1, 4)]
    act = [activity_row(i, activity_type="agency_placement", end_date=AS_OF) for i in range(1, 3)]
    return stage(conn, invoices=inv, payments=pay, activities=act, control=control)


#: Shaped like the sample ERP export's control.json (nested per dataset, see docs/sample-data.md).
CONTROL = {
    "invoices": {"rows": 5, "amount_total": "515.00"},
    "payments": {"rows": 3, "amount_total": "60.00"},
    "activities": {"rows": 2},
}


def control_with(dataset: str, key: str, value: object) -> dict:
    """CONTROL with one reported total changed."""
    return {**CONTROL, dataset: {**CONTROL[dataset], key: value}}


def test_clean_batch_passes_every_check(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _clean(conn, CONTROL)
    report = validate_batches(ledger, [batch], as_of=AS_OF, run_key="t2")  # committed config, share guard on
    findings = [f for t in report.targets for f in t.findings]
    assert findings and all(f.success for f in findings), [f for f in findings if not f.success]
    names = {f.check for f in findings}
    assert {
        "invoices.control_row_count",
        "invoices.control_amount_total",
        "payments.control_amount_total",
        "invoices.required_columns",
        "invoices.column_types",
        "payments.customer_known",
    } <= names
    assert quarantined(ledger, batch) == []


@pytest.mark.parametrize(
    ("control", "failing"),
    [
        (control_with("invoices", "rows", 6), "invoices.control_row_count"),
        (control_with("invoices", "amount_total", "515.01"), "invoices.control_amount_total"),
        (control_with("payments", "rows", 2), "payments.control_row_count"),
        (control_with("payments", "amount_total", "59.99"), "payments.control_amount_total"),
        (control_with("activities", "rows", 3), "activities.control_row_count"),
    ],
)
def test_control_total_mismatch_blocks(ledger: Engine, control: dict, failing: str) -> None:
    with ledger.begin() as conn:
        batch = _clean(conn, control)
    with pytest.raises(ValidationBlocked, match=failing.replace(".", r"\.")) as err:
        validate_batches(ledger, [batch], as_of=AS_OF, run_key="t3", config=LENIENT)
    assert [f.check for _, f in err.value.report.blocking] == [failing]
    with ledger.connect() as conn:
        row = conn.execute(
            text("SELECT blocking_failed FROM validation_runs WHERE suite = :s"), {"s": failing.split(".")[0]}
        ).one()
    assert row.blocking_failed == 1


def test_control_checks_skipped_when_not_reported(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _clean(conn, {"invoices": {"rows": 5}})  # only the invoice count is reported
    report = validate_batches(ledger, [batch], as_of=AS_OF, run_key="t4", config=LENIENT)
    inv = next(t for t in report.targets if t.suite == "invoices")
    assert "invoices.control_row_count" in {f.check for f in inv.findings}
    assert "invoices.control_amount_total" in inv.skipped


def test_blocking_failure_quarantines_nothing(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _faulty(conn)
        conn.execute(text("UPDATE ingest_batches SET control = :c"), {"c": json.dumps({"invoices": {"rows": 99}})})
    with pytest.raises(ValidationBlocked):
        validate_batches(ledger, [batch], as_of=AS_OF, run_key="t5", config=LENIENT)
    assert quarantined(ledger, batch) == []
    assert len(staged_rows(ledger, "stg_invoices", batch)) == 11


def test_share_guard_blocks_a_mostly_bad_batch(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _faulty(conn)
    with pytest.raises(ValidationBlocked, match="quarantine_share"):
        validate_batches(ledger, [batch], as_of=AS_OF, run_key="t6")  # committed config: 5 % limit
    assert quarantined(ledger, batch) == []


def test_severity_is_configuration(ledger: Engine) -> None:
    with ledger.begin() as conn:
        batch = _faulty(conn)
    cfg = parse({"max_quarantined_fraction": "1", "severity": {"*.currency_iso4217": "blocking"}})
    with pytest.raises(ValidationBlocked) as err:
        validate_batches(ledger, [batch], as_of=AS_OF, run_key="t7", config=cfg)
    assert sorted(f.check for _, f in err.value.report.blocking) == [
        "invoices.currency_iso4217",
        "payments.currency_iso4217",
    ]


@pytest.mark.parametrize(
    ("ddl_change", "failing"),
    [("DROP COLUMN due_date", "invoices.required_columns"), ("amount_text", "invoices.column_types")],
)
def test_structure_checks_block(ledger: Engine, ddl_change: str, failing: str) -> None:
    """A staging table that lost a column or changed a type fails the structural checks (a malformed copy)."""
    with ledger.begin() as conn:
        cols = (
            "batch_id INTEGER, source_row INTEGER, source_file VARCHAR(300), entity VARCHAR(16),"
            " invoice_ref VARCHAR(64), customer_ref VARCHAR(64), invoice_date DATE, due_date DATE,"
            " currency VARCHAR(3), amount NUMERIC(20,4), open_balance NUMERIC(20,4), fx_rate NUMERIC(20,10),"
            " disputed BOOLEAN, dispute_since DATE, payment_plan BOOLEAN, bankrupt BOOLEAN,"
            " transferred_to_parent BOOLEAN"
        )
        if ddl_change == "amount_text":
            cols = cols.replace("amount NUMERIC(20,4)", "amount TEXT")
        else:
            cols = cols.replace(" due_date DATE,", "")
        conn.execute(text(f"CREATE TABLE stg_invoices_bad ({cols})"))
        factories.entity(conn)
        tables = Tables(invoices="stg_invoices_bad")
        batch = stage(conn, invoices=[invoice_row(1)], tables=tables)
    with pytest.raises(ValidationBlocked) as err:
        validate_batches(ledger, [batch], as_of=AS_OF, run_key="t8", config=LENIENT, tables=tables)
    assert failing in {f.check for _, f in err.value.report.blocking}


# --- aging snapshot: bucket consistency and GL tie-out ---------------------------------------------------------


def _aging(conn, *, gl_amount: str, bucket: str = "31-60", dpd: int = 40) -> None:
    factories.entity(conn)
    cid = factories.customer(conn)
    iid = factories.invoice(conn, cid, amount="1000.00", days_past_due=dpd)
    conn.execute(
        aging_snapshots.insert().values(
            as_of_date=AS_OF,
            invoice_id=iid,
            entity_code="US01",
            customer_id=cid,
            currency="USD",
            days_past_due=dpd,
            bucket=bucket,
            open_balance=Decimal("1000.00"),
        )
    )
    ar = gl.account_for_role(conn, "US01", "ar_control")
    sus = gl.account_for_role(conn, "US01", "suspense")
    amt = Decimal(gl_amount)
    gl.post_entries(
        conn,
        [
            JournalEntry(
                key="ar-sync-1",
                entity="US01",
                posting_date=AS_OF - timedelta(days=1),
                lines=(JournalLine(ar, "USD", debit=amt), JournalLine(sus, "USD", credit=amt)),
            )
        ],
        created_by="test",
    )


def test_aging_tie_out_and_buckets_pass(ledger: Engine) -> None:
    with ledger.begin() as conn:
        _aging(conn, gl_amount="999.99")  # 0.01 off: within the configured 0.01 tolerance
    report = validate_aging(ledger, as_of=AS_OF, run_key="aging-ok")
    assert all(f.success for f in report.targets[0].findings)
    assert {f.check for f in report.targets[0].findings} >= {"aging.tie_out_gl", "aging.bucket_matches_days_past_due"}


def test_aging_tie_out_break_blocks(ledger: Engine) -> None:
    with ledger.begin() as conn:
        _aging(conn, gl_amount="990.00")
    with pytest.raises(ValidationBlocked, match=r"aging\.tie_out_gl"):
        validate_aging(ledger, as_of=AS_OF, run_key="aging-break")
    with ledger.connect() as conn:
        details = json.loads(conn.execute(text("SELECT details FROM validation_runs WHERE suite = 'aging'")).scalar())
    breaks = json.loads(details["skipped"]["tie_out_breaks"])
    assert breaks == [
        {
            "entity": "US01",
            "currency": "USD",
            "aging_total": "1000.0000",
            "gl_balance": "990.0000",
            "difference": "10.0000",
        }
    ]


def test_aging_bucket_inconsistent_blocks(ledger: Engine) -> None:
    with ledger.begin() as conn:
        _aging(conn, gl_amount="1000.00", bucket="1-30", dpd=40)
    with pytest.raises(ValidationBlocked) as err:
        validate_aging(ledger, as_of=AS_OF, run_key="aging-bucket")
    assert [f.check for _, f in err.value.report.blocking] == ["aging.bucket_matches_days_past_due"]


def test_a_postgresql_ledger_on_a_search_path_with_spaces_validates(pg_admin, pg_schema) -> None:
    """PostgreSQL's default search_path is ``"$user", public``: GX's own connections used to break at the space
    (``validate`` failed on any ledger without a one-word search path). Here the ledger's path has the default's
    shape, and the run must see the same tables the ledger does."""
    from tests.conftest import PG_URL
    from writeoffs.db.engine import make_engine, search_path_option
    from writeoffs.db.migrate import upgrade

    path = f'"$user", {pg_schema}'
    engine = make_engine(PG_URL, schema=path)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW search_path")).scalar_one() == path
        upgrade(engine)
        with engine.begin() as conn:
            batch = _clean(conn, CONTROL)
        report = validate_batches(engine, [batch], as_of=AS_OF, run_key="t-search-path")
        findings = [f for t in report.targets for f in t.findings]
        assert findings and all(f.success for f in findings), [f for f in findings if not f.success]
    finally:
        engine.dispose()
    assert search_path_option('"$user", public') == '-csearch_path="$user",\\ public'
