"""Cash for written-off invoices through the pipeline: ERP export → stage → merge ('recovery' allocation) →
book_pending_recoveries (recovery entry) → reconciliation clean. Both ledger databases.

The worked example end to end: $45,000 written off, six months later the new owner pays $30,000 →
`Dr Cash 30,000 / Cr Bad Debt Recovery 30,000`, $15,000 stays written off; re-runs post nothing new.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import ledger as gl
from writeoffs import reconcile
from writeoffs.db.money import from_db
from writeoffs.db.schema import audit_log, invoices, journal_entries, journal_lines, payment_allocations, recoveries
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.pipeline import age
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.posting import post_batch
from writeoffs.recoveries_pending import book_pending_recoveries

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
SIX_MONTHS_LATER = date(2027, 5, 20)
INVOICE_HEADER = (
    "Company,Invoice No,Customer No,Customer Name,Parent Customer No,Segment,Invoice Date,Due Date,Currency,Amount,"
    "Open Balance,FX Rate,Disputed,Dispute Since,Payment Plan,Bankrupt,Transferred To Parent,Description"
)
PAYMENT_HEADER = "Company,Payment No,Customer No,Payment Date,Currency,Amount,Invoice No,Applied Amount"


def us(day: date) -> str:
    return day.strftime("%m/%d/%Y")


def invoice_row(ref: str, amount: str, open_balance: str, *, entity: str = "US01", currency: str = "USD") -> str:
    return (
        f'{entity},{ref},C-NORTHWIND,Northwind,,it_services,09/15/2025,10/15/2025,{currency},"{amount}",'
        f'"{open_balance}",,No,,No,No,No,consulting'
    )


def payment_row(
    ref: str, day: date, amount: str, invoice_ref: str, *, entity: str = "US01", currency: str = "USD"
) -> str:
    return f'{entity},{ref},C-NORTHWIND,{us(day)},{currency},"{amount}",{invoice_ref},"{amount}"'


def ingest(engine: Engine, tmp_path: Path, as_of: date, inv_rows: list[str], pay_rows: list[str]) -> dict:
    """Write an ERP export (the erp_csv mapping of include/config/sources.yaml), stage and merge it."""
    d = tmp_path / f"erp_{as_of.isoformat()}"
    d.mkdir(exist_ok=True)
    (d / "invoices.csv").write_text("\n".join([INVOICE_HEADER, *inv_rows]) + "\n")
    (d / "payments.csv").write_text("\n".join([PAYMENT_HEADER, *pay_rows]) + "\n")
    (d / "activities.csv").write_text("Company,Customer No,Invoice No,Activity,Date,End Date,Outcome\n")
    (d / "control.json").write_text(json.dumps({"as_of": as_of.isoformat(), "invoices": {"rows": len(inv_rows)}}))
    config = source_config.load()
    staged = stage(engine, config, build_source(config.source("erp_csv"), location=str(d)), as_of)
    assert staged["rows_quarantined"] == 0, staged
    merged = merge(engine, config, [staged["batch_id"]], as_of)["batches"][0]
    age(engine, config, as_of)
    return merged["counts"]


def write_off(engine: Engine, invoice_ref: str, amount: str, *, entity: str = "US01", currency: str = "USD") -> int:
    with engine.begin() as conn:
        iid = conn.execute(select(invoices.c.id).where(invoices.c.invoice_ref == invoice_ref)).scalar_one()
        # An allowance-method entity funds its reserve first when it holds too little (never a debit balance).
        batch = make_batch(
            conn,
            [(iid, amount, "uncollectible_after_collections")],
            entity=entity,
            currency=currency,
            allowance_shortfall="fund",
        )
    approve(engine, batch)
    report = post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    assert report.status == "posted", report
    return iid


def invoice_state(engine: Engine, iid: int) -> tuple:
    with engine.connect() as conn:
        r = conn.execute(select(invoices).where(invoices.c.id == iid)).one()
    return r.open_balance, r.written_off_amount, r.recovered_amount, r.status


def allocations(engine: Engine) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.payment_ref, i.invoice_ref, a.kind, a.amount FROM payment_allocations a "
                "JOIN payments p ON p.id = a.payment_id JOIN invoices i ON i.id = a.invoice_id ORDER BY 1, 2, 3"
            )
        ).all()
    return [(r[0], r[1], r[2], from_db(engine.dialect, r[3]).quantize(D("0.01"))) for r in rows]


def recovery_lines(engine: Engine) -> list[list[tuple]]:
    """Lines of every recovery entry, in entry order: (account, debit, credit)."""
    with engine.connect() as conn:
        ids = conn.execute(
            select(journal_entries.c.id).where(journal_entries.c.source_type == "recovery").order_by("id")
        ).scalars()
        return [
            [
                tuple(r)
                for r in conn.execute(
                    select(journal_lines.c.account_code, journal_lines.c.debit, journal_lines.c.credit)
                    .where(journal_lines.c.entry_id == eid)
                    .order_by(journal_lines.c.line_no)
                )
            ]
            for eid in ids.all()
        ]


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(journal_entries)).scalar_one(),
            conn.execute(select(func.count()).select_from(recoveries)).scalar_one(),
            conn.execute(select(func.count()).select_from(payment_allocations)).scalar_one(),
        )


def assert_reconciles(engine: Engine, tmp_path: Path, key: str) -> None:
    result = reconcile.reconcile(engine, SIX_MONTHS_LATER, run_key=key, report_dir=tmp_path)
    assert result.break_count == 0, [b.message for b in result.breaks]


def test_worked_example_recovery_through_ingestion_and_reruns_post_nothing(ledger: Engine, tmp_path: Path) -> None:
    worked = invoice_row("INV-WORKED-45000", "45,000.00", "45,000.00")
    other = invoice_row("INV-OPEN-1", "1,000.00", "1,000.00")
    ingest(ledger, tmp_path, AS_OF, [worked, other], [])
    iid = write_off(ledger, "INV-WORKED-45000", "45000.00")
    assert invoice_state(ledger, iid) == (D("0"), D("45000"), D("0"), "written_off")

    # Six months later the ERP still lists the invoice (the ledger owns its state) and the new owner's $30,000.
    pay = payment_row("P-NEWOWNER", date(2027, 5, 18), "30,000.00", "INV-WORKED-45000")
    merged = ingest(ledger, tmp_path, SIX_MONTHS_LATER, [worked, other], [pay])
    assert (merged["allocations_recovery_inserted"], merged["allocations_regular_inserted"]) == (1, 0)
    assert allocations(ledger) == [("P-NEWOWNER", "INV-WORKED-45000", "recovery", D("30000.00"))]
    assert invoice_state(ledger, iid) == (D("0"), D("45000"), D("0"), "written_off")  # merge books nothing

    summary = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")
    assert (summary["booked"], summary["booked_by_currency"], summary["excess_count"]) == (1, {"USD": "30000.00"}, 0)
    assert recovery_lines(ledger) == [[("1000", D("30000"), D("0")), ("4900", D("0"), D("30000"))]]
    assert invoice_state(ledger, iid) == (D("0"), D("45000"), D("30000"), "partially_recovered")
    _, written_off, recovered, _ = invoice_state(ledger, iid)
    assert written_off - recovered == D("15000")  # the remaining $15,000 stays written off
    with ledger.connect() as conn:
        rec = conn.execute(select(recoveries)).one()
        assert (rec.recovery_date, rec.amount) == (date(2027, 5, 18), D("30000"))  # dated when the cash came
    assert_reconciles(ledger, tmp_path, "recoveries:first")

    # Same day again, and the next day with the payment history resent: nothing new anywhere.
    before = counts(ledger)
    again = ingest(ledger, tmp_path, SIX_MONTHS_LATER, [worked, other], [pay])
    assert again["allocations_inserted"] == 0
    assert book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")["booked"] == 0
    nxt = ingest(ledger, tmp_path, date(2027, 5, 21), [worked, other], [pay])
    assert nxt["allocations_inserted"] == 0
    assert book_pending_recoveries(ledger, date(2027, 5, 21), "ingest")["booked"] == 0
    assert counts(ledger) == before
    assert invoice_state(ledger, iid) == (D("0"), D("45000"), D("30000"), "partially_recovered")
    assert_reconciles(ledger, tmp_path, "recoveries:rerun")


def test_allowance_entity_books_reinstate_then_collect(ledger: Engine, tmp_path: Path) -> None:
    # EU01 is an allowance-method entity in include/config/sources.yaml (bootstrapped by the merge).
    row = invoice_row("INV-EU-1", "1,200.00", "1,200.00", entity="EU01", currency="EUR")
    ingest(ledger, tmp_path, AS_OF, [row], [])
    iid = write_off(ledger, "INV-EU-1", "1200.00", entity="EU01", currency="EUR")

    pay = payment_row("P-EU-1", date(2027, 5, 2), "1,200.00", "INV-EU-1", entity="EU01", currency="EUR")
    ingest(ledger, tmp_path, SIX_MONTHS_LATER, [row], [pay])
    summary = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")

    assert summary["booked_by_currency"] == {"EUR": "1200.00"}
    assert recovery_lines(ledger) == [
        [
            ("1100", D("1200"), D("0")),  # Dr AR: reinstate
            ("1190", D("0"), D("1200")),  # Cr Allowance
            ("1000", D("1200"), D("0")),  # Dr Cash: collect
            ("1100", D("0"), D("1200")),  # Cr AR
        ]
    ]
    assert invoice_state(ledger, iid) == (D("0"), D("1200"), D("1200"), "recovered")
    assert_reconciles(ledger, tmp_path, "recoveries:allowance")


def test_cash_above_what_remains_written_off_is_capped_and_the_excess_reported(ledger: Engine, tmp_path: Path) -> None:
    worked = invoice_row("INV-WORKED-45000", "45,000.00", "45,000.00")
    ingest(ledger, tmp_path, AS_OF, [worked], [])
    iid = write_off(ledger, "INV-WORKED-45000", "45000.00")

    # Two payments in one load: the earlier one is booked first, the later one only up to the $15,000 left.
    pays = [
        payment_row("P-1", date(2027, 5, 10), "30,000.00", "INV-WORKED-45000"),
        payment_row("P-2", date(2027, 5, 15), "20,000.00", "INV-WORKED-45000"),
    ]
    ingest(ledger, tmp_path, SIX_MONTHS_LATER, [worked], pays)
    summary = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")

    assert (summary["booked"], summary["booked_by_currency"]) == (2, {"USD": "45000.00"})
    assert (summary["excess_count"], summary["excess_by_currency"]) == (1, {"USD": "5000.00"})
    assert summary["excess"] == [
        {
            "entity": "US01",
            "invoice_ref": "INV-WORKED-45000",
            "payment_ref": "P-2",
            "currency": "USD",
            "allocated": "20000.00",
            "booked": "15000.00",
            "excess": "5000.00",
        }
    ]
    assert summary["unapplied_recovery_cash_by_currency"] == {"USD": "5000.00"}
    with ledger.connect() as conn:
        booked = conn.execute(select(recoveries.c.amount).order_by(recoveries.c.recovery_date)).scalars().all()
        excess_audit = conn.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.action == "recovery.excess")
        ).scalar_one()
    assert booked == [D("30000"), D("15000")]
    assert excess_audit == 1
    assert invoice_state(ledger, iid) == (D("0"), D("45000"), D("45000"), "recovered")

    # The excess is cash received: it reaches the GL as unapplied cash (a liability), never income.
    with ledger.connect() as conn:
        assert gl.account_balance(conn, "US01", "2100", "USD") == D("-5000")
        assert gl.account_balance(conn, "US01", "1000", "USD") == D("50000")  # cash booked = cash received

    # More cash on the fully recovered invoice: nothing left to recover, all of it unapplied cash, booked once.
    late = payment_row("P-3", date(2027, 5, 19), "700.00", "INV-WORKED-45000")
    ingest(ledger, tmp_path, SIX_MONTHS_LATER, [worked], [*pays, late])
    rerun = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")
    assert (rerun["booked"], rerun["excess_count"], rerun["excess_by_currency"]) == (0, 1, {"USD": "700.00"})
    assert rerun["unapplied_recovery_cash_by_currency"] == {"USD": "5700.00"}
    before = counts(ledger)
    again = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")
    assert (again["booked"], again["excess_count"]) == (0, 0)
    assert counts(ledger) == before
    with ledger.connect() as conn:
        assert gl.account_balance(conn, "US01", "2100", "USD") == D("-5700")
        assert gl.account_balance(conn, "US01", "1000", "USD") == D("50700")
        assert (
            conn.execute(
                select(func.count()).select_from(audit_log).where(audit_log.c.action == "recovery.excess")
            ).scalar_one()
            == 2
        )
    assert_reconciles(ledger, tmp_path, "recoveries:capped")


def test_partly_written_off_invoice_takes_cash_on_its_open_part_first(ledger: Engine, tmp_path: Path) -> None:
    # 1,000 invoiced, 100 paid before the write-off (regular), 500 written off, 400 left open.
    early = payment_row("P-EARLY", date(2026, 10, 1), "100.00", "INV-PART")
    ingest(ledger, tmp_path, AS_OF, [invoice_row("INV-PART", "1,000.00", "900.00")], [early])
    iid = write_off(ledger, "INV-PART", "500.00")
    assert invoice_state(ledger, iid) == (D("400"), D("500"), D("0"), "open")

    # The customer then pays 700: 400 settles what is open, 300 recovers part of the write-off. The ERP resends
    # the early payment, which stays what it was (regular, no recovery).
    late = payment_row("P-LATE", date(2027, 5, 5), "700.00", "INV-PART")
    merged = ingest(ledger, tmp_path, SIX_MONTHS_LATER, [invoice_row("INV-PART", "1,000.00", "0.00")], [early, late])
    assert (merged["allocations_regular_inserted"], merged["allocations_recovery_inserted"]) == (1, 1)
    assert allocations(ledger) == [
        ("P-EARLY", "INV-PART", "regular", D("100.00")),
        ("P-LATE", "INV-PART", "recovery", D("300.00")),
        ("P-LATE", "INV-PART", "regular", D("400.00")),
    ]
    summary = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")
    assert (summary["booked_by_currency"], summary["excess_count"]) == ({"USD": "300.00"}, 0)
    assert recovery_lines(ledger) == [[("1000", D("300"), D("0")), ("4900", D("0"), D("300"))]]
    assert invoice_state(ledger, iid) == (D("0"), D("500"), D("300"), "partially_recovered")
    assert_reconciles(ledger, tmp_path, "recoveries:partial")


def test_payment_on_an_invoice_never_written_off_stays_regular(ledger: Engine, tmp_path: Path) -> None:
    pay = payment_row("P-OPEN", date(2026, 11, 1), "250.00", "INV-OPEN")
    merged = ingest(ledger, tmp_path, AS_OF, [invoice_row("INV-OPEN", "1,000.00", "750.00")], [pay])
    assert (merged["allocations_regular_inserted"], merged["allocations_recovery_inserted"]) == (1, 0)
    summary = book_pending_recoveries(ledger, AS_OF, "ingest")
    assert (summary["booked"], summary["chunks"]) == (0, 0)
    assert recovery_lines(ledger) == []


def test_ingest_dag_books_recoveries_between_merge_and_aging(tmp_path: Path) -> None:
    """The DAG wiring: merge → recoveries → aging, the rest untouched (parsed in a subprocess like the DAG tests)."""
    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1])\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "dag = bag.dags['ar_aging_ingest']\n"
        "print('RESULT ' + json.dumps({t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__CORE__DAGS")} | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT)]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "dags" / "ar_aging_ingest.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out, proc.stdout[-2000:] + proc.stderr[-2000:]
    upstream = json.loads(out[-1][7:])
    assert upstream["recoveries"] == ["business_date", "merge"]
    assert upstream["aging"] == ["business_date", "merge", "recoveries"]
    assert upstream["validate_aging"] == ["aging", "business_date"]
    assert upstream["merge"] == ["business_date", "validate"]


def test_cash_for_a_closed_period_is_booked_on_the_business_date(ledger: Engine, tmp_path: Path) -> None:
    from writeoffs import ledger as gl

    worked = invoice_row("INV-WORKED-45000", "45,000.00", "45,000.00")
    ingest(ledger, tmp_path, AS_OF, [worked], [])
    write_off(ledger, "INV-WORKED-45000", "45000.00")
    ingest(
        ledger,
        tmp_path,
        SIX_MONTHS_LATER,
        [worked],
        [payment_row("P-1", date(2027, 4, 28), "100.00", "INV-WORKED-45000")],
    )
    with ledger.begin() as conn:
        gl.close_period(conn, "US01", "2027-04", actor="controller")
    summary = book_pending_recoveries(ledger, SIX_MONTHS_LATER, "ingest")
    assert (summary["booked"], summary["booked_on_business_date"]) == (1, 1)
    with ledger.connect() as conn:
        assert conn.execute(select(recoveries.c.recovery_date)).scalar_one() == SIX_MONTHS_LATER


def test_reingesting_a_partly_written_off_invoice_keeps_the_write_off(ledger: Engine, tmp_path: Path) -> None:
    # The ERP does not know our write-off: the next export still shows 900 open. The sub-ledger must keep
    # 900 - 500 = 400, or the write-off's reduction is undone and the GL AR control no longer ties.
    row = invoice_row("INV-PART2", "1,000.00", "900.00")
    early = payment_row("P-EARLY2", date(2026, 10, 1), "100.00", "INV-PART2")
    ingest(ledger, tmp_path, AS_OF, [row], [early])
    iid = write_off(ledger, "INV-PART2", "500.00")
    ingest(ledger, tmp_path, SIX_MONTHS_LATER, [row], [early])
    assert invoice_state(ledger, iid) == (D("400"), D("500"), D("0"), "open")
    # A later export with 150 paid on it nets to 250 open.
    ingest(ledger, tmp_path, SIX_MONTHS_LATER, [invoice_row("INV-PART2", "1,000.00", "750.00")], [early])
    assert invoice_state(ledger, iid) == (D("250"), D("500"), D("0"), "open")
    assert_reconciles(ledger, tmp_path, "recoveries:reingest")
