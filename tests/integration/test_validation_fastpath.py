"""The fast path (row-level checks counted in one SQL pass) against the GX path, on the same data, both databases.

Each case stages the same batch into two fresh ledgers of one dialect, validates one with every row-level check
counted by GX (``fast_path_min_rows`` above the batch size) and the other with them counted in SQL
(``fast_path_min_rows: 0``), and compares everything a user or the merge can see: each check's outcome and counts,
what blocked, the quarantined rows, the rows left in staging, the ingest batch's counts and the validation_runs
rows. The Data Docs of the fast path must show the SQL-counted checks too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.integration._validation_data import AS_OF, quarantined, staged_rows
from tests.integration.test_validation_checks import CONTROL, EXPECTED, _clean, _faulty, control_with
from writeoffs.validation.config import parse
from writeoffs.validation.run import ValidationBlocked, ValidationReport, validate_batches

GX_PATH = {"fast_path_min_rows": 10**9}
SQL_PATH = {"fast_path_min_rows": 0}


@pytest.fixture(autouse=True)
def _reports(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))


def _run(engine: Engine, batch: int, settings: dict, run_key: str) -> tuple[ValidationReport | None, list[str]]:
    cfg = parse({"max_quarantined_fraction": "1", **settings})
    try:
        return validate_batches(engine, [batch], as_of=AS_OF, run_key=run_key, config=cfg), []
    except ValidationBlocked as exc:
        return exc.report, sorted(f.check for _, f in exc.report.blocking)


def _seen(engine: Engine, batch: int, report: ValidationReport) -> dict:
    """Everything observable about a validation run, minus paths and timestamps."""
    with engine.connect() as conn:
        b = conn.execute(
            text("SELECT rows_accepted, rows_quarantined, details FROM ingest_batches WHERE id = :b"), {"b": batch}
        ).one()
        runs = conn.execute(
            text(
                "SELECT suite, evaluated, failed, blocking_failed, rows_quarantined, details FROM validation_runs"
                " ORDER BY suite"
            )
        ).all()
    return {
        "findings": sorted(
            (t.suite, f.check, f.severity, f.success, f.evaluated, f.failed, f.unexpected_count, f.quarantined)
            for t in report.targets
            for f in t.findings
        ),
        "skipped": [t.skipped for t in report.targets],
        "quarantined": quarantined(engine, batch),
        "staged": {t: staged_rows(engine, t, batch) for t in ("stg_invoices", "stg_payments", "stg_activities")},
        "batch": (b.rows_accepted, b.rows_quarantined, json.loads(b.details)),
        "runs": [
            (
                r.suite,
                r.evaluated,
                r.failed,
                r.blocking_failed,
                r.rows_quarantined,
                _by_check(json.loads(r.details)["checks"]),
            )
            for r in runs
        ],
    }


def _both(make_ledger: Callable[[str], Engine], dialect: str, build: Callable, settings: dict | None = None):
    out = []
    for path in (GX_PATH, SQL_PATH):
        engine = make_ledger(dialect)
        with engine.begin() as conn:
            batch = build(conn)
        report, blocked = _run(engine, batch, {**(settings or {}), **path}, run_key=f"fp-{len(out)}")
        assert report is not None
        out.append((engine, batch, report, blocked, _seen(engine, batch, report)))
    return out


def _by_check(checks: list[dict]) -> list[dict]:
    return sorted(checks, key=lambda c: c["check"])  # GX orders results by its own rules; the order means nothing


DIALECTS = pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])


@DIALECTS
def test_fast_path_quarantines_exactly_what_the_gx_path_does(make_ledger, dialect: str) -> None:
    (_, _, _, gx_blocked, gx_seen), (_, _, fast, fast_blocked, fast_seen) = _both(make_ledger, dialect, _faulty)
    assert gx_blocked == fast_blocked == []
    assert fast_seen == gx_seen
    assert fast_seen["quarantined"] == sorted(EXPECTED)  # and both are right, not merely alike
    # The fast path's report shows the SQL-counted checks, with their counts, on the batch's page.
    inv = next(t for t in fast.targets if t.suite == "invoices")
    page = Path(inv.report_path.removeprefix("file://")).read_text()
    assert "open_balance_within_amount" in page and "unique_invoice" in page
    assert Path(fast.docs_index).is_file()


@DIALECTS
@pytest.mark.parametrize(
    ("build", "settings", "blocking"),
    [
        (lambda c: _clean(c, CONTROL), {}, []),
        (lambda c: _clean(c, control_with("invoices", "rows", 6)), {}, ["invoices.control_row_count"]),
        (
            lambda c: _clean(c, control_with("payments", "amount_total", "59.99")),
            {},
            ["payments.control_amount_total"],
        ),
        (
            _faulty,
            {"severity": {"*.currency_iso4217": "blocking"}},
            ["invoices.currency_iso4217", "payments.currency_iso4217"],
        ),
        (
            _faulty,
            {"max_quarantined_fraction": "0.05"},
            ["activities.quarantine_share", "invoices.quarantine_share", "payments.quarantine_share"],
        ),
    ],
    ids=["clean", "control-rows", "control-amount", "row-check-blocking", "share-guard"],
)
def test_fast_path_gates_exactly_like_the_gx_path(
    make_ledger, dialect: str, build: Callable, settings: dict, blocking: list[str]
) -> None:
    (_, _, _, gx_blocked, gx_seen), (_, _, _, fast_blocked, fast_seen) = _both(make_ledger, dialect, build, settings)
    assert gx_blocked == fast_blocked == blocking
    assert fast_seen == gx_seen
    if blocking:
        assert fast_seen["quarantined"] == []  # a blocked run moves nothing


@DIALECTS
def test_fast_path_on_a_malformed_table_blocks_on_structure(make_ledger, dialect: str) -> None:
    """The predicates cannot run on a table that lost a column: GX's structural check says why, and nothing moves."""
    from tests import factories
    from tests.integration._validation_data import invoice_row, stage
    from writeoffs.validation.checks import Tables

    engine = make_ledger(dialect)
    tables = Tables(invoices="stg_invoices_bad")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE stg_invoices_bad (batch_id INTEGER, source_row INTEGER, source_file VARCHAR(300),"
                " entity VARCHAR(16), invoice_ref VARCHAR(64), customer_ref VARCHAR(64), invoice_date DATE,"
                " currency VARCHAR(3), amount TEXT, open_balance NUMERIC(20,4), fx_rate NUMERIC(20,10),"
                " disputed BOOLEAN, dispute_since DATE, payment_plan BOOLEAN, bankrupt BOOLEAN,"
                " transferred_to_parent BOOLEAN)"
            )
        )
        factories.entity(conn)
        batch = stage(conn, invoices=[invoice_row(1)], tables=tables)
    cfg = parse({"max_quarantined_fraction": "1", **SQL_PATH})
    with pytest.raises(ValidationBlocked) as err:
        validate_batches(engine, [batch], as_of=AS_OF, run_key="fp-bad", config=cfg, tables=tables)
    assert "invoices.required_columns" in {f.check for _, f in err.value.report.blocking}
    assert quarantined(engine, batch) == []
