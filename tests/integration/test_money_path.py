"""The money path in every case a controller meets, table-driven, on SQLite and PostgreSQL.

Each scenario drives the real pipeline functions (ERP export -> stage -> merge -> aging; charge-off, selection,
approval, posting, recoveries, reversal, allowance) and asserts the exact journal lines it produced, the invoice's
state and a clean reconciliation afterwards. The cases are the ones a review found booking wrong money:

- cash on a *charged-off* invoice reduces its balance (it was written off as if unpaid before);
- an approved write-off of an invoice paid after selection is skipped at posting;
- unapplied cash (a payment above what remains written off) reaches the GL (Dr Cash / Cr Unapplied Cash);
- a reversed write-off is not re-proposed until a person clears it (and the source cannot flip it to open);
- two partial write-offs of one invoice selected from the same balance: only the first posts;
- AR sync rounds half-up per invoice like every other entry: no functional residue on AR control;
- an allowance estimate on the date write-offs were posted does not count them again;
- an allowance-method write-off against an unfunded allowance is refused (or funded first, per policy);
- posting re-checks the parent/child rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from tests.integration.test_recoveries_pipeline import INVOICE_HEADER, PAYMENT_HEADER, payment_row
from writeoffs import reconcile
from writeoffs.allowance import run_allowance
from writeoffs.db.money import from_db
from writeoffs.db.schema import allowance_estimates, invoices, writeoffs
from writeoffs.errors import WriteoffError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.pipeline import age
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.policy.schema import parse_policy
from writeoffs.policy.selection import decisions
from writeoffs.policy.service import run_charge_off
from writeoffs.posting import post_batch
from writeoffs.recoveries_pending import book_pending_recoveries
from writeoffs.reversal import clear_reversal, reverse_writeoff

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
POLICY = parse_policy((ROOT / "include" / "config" / "policy.yaml").read_text())
NEXT_DAY = AS_OF + timedelta(days=1)


# --- helpers ----------------------------------------------------------------------------------------------------


def row(ref: str, amount: str, open_balance: str, *, bankrupt: bool = False, fx: str = "", cur: str = "USD") -> str:
    """An erp_csv invoice row, due 2025-10-15 (405 days past due at AS_OF)."""
    flag = "Yes" if bankrupt else "No"
    return (
        f'US01,{ref},C-NORTHWIND,Northwind,,it_services,09/15/2025,10/15/2025,{cur},"{amount}",'
        f'"{open_balance}",{fx},No,,No,{flag},No,consulting'
    )


def ingest(engine: Engine, tmp: Path, as_of: date, inv_rows: list[str], pay_rows: list[str] = ()) -> dict:
    d = tmp / f"erp_{as_of.isoformat()}_{len(list(tmp.iterdir()))}"
    d.mkdir()
    (d / "invoices.csv").write_text("\n".join([INVOICE_HEADER, *inv_rows]) + "\n")
    (d / "payments.csv").write_text("\n".join([PAYMENT_HEADER, *pay_rows]) + "\n")
    (d / "activities.csv").write_text("Company,Customer No,Invoice No,Activity,Date,End Date,Outcome\n")
    (d / "control.json").write_text(json.dumps({"as_of": as_of.isoformat(), "invoices": {"rows": len(inv_rows)}}))
    config = source_config.load()
    staged = stage(engine, config, build_source(config.source("erp_csv"), location=str(d)), as_of)
    assert staged["rows_quarantined"] == 0, staged
    merged = merge(engine, config, [staged["batch_id"]], as_of)["batches"][0]
    age(engine, config, as_of)
    book_pending_recoveries(engine, as_of, "ingest")
    return merged["counts"]


def inv(engine: Engine, ref: str):
    with engine.connect() as conn:
        return conn.execute(select(invoices).where(invoices.c.invoice_ref == ref)).one()


def state(engine: Engine, ref: str) -> tuple:
    r = inv(engine, ref)
    return (r.status, D(str(r.open_balance)), D(str(r.written_off_amount)), D(str(r.recovered_amount)))


def lines(engine: Engine, source_type: str) -> list[tuple]:
    """(account, debit, credit, functional debit, functional credit) of every posted entry of a source, in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.account_code, l.debit, l.credit, l.functional_debit, l.functional_credit "
                "FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id "
                "WHERE e.source_type = :s AND e.status = 'posted' ORDER BY e.id, l.line_no"
            ),
            {"s": source_type},
        ).all()
    # Raw SQL: money comes back as stored (integer ten-thousandths on SQLite) and is decoded like the code does.
    return [(r[0], *(from_db(engine.dialect, v).quantize(D("0.01")) for v in r[1:])) for r in rows]


def account_balance(engine: Engine, entity: str, account: str) -> tuple[Decimal, Decimal]:
    """(transaction, functional) debit balance of one account."""
    with engine.connect() as conn:
        r = conn.execute(
            text(
                "SELECT COALESCE(SUM(l.debit - l.credit), 0),"
                " COALESCE(SUM(l.functional_debit - l.functional_credit), 0) FROM journal_lines l"
                " JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted'"
                " WHERE l.entity_code = :e AND l.account_code = :a"
            ),
            {"e": entity, "a": account},
        ).one()
    return from_db(engine.dialect, r[0]).quantize(D("0.01")), from_db(engine.dialect, r[1]).quantize(D("0.01"))


def decision_of(engine: Engine, ref: str, as_of: date) -> dict | None:
    with engine.connect() as conn:
        iid = conn.execute(select(invoices.c.id).where(invoices.c.invoice_ref == ref)).scalar_one()
        found = [d for d in decisions(conn, POLICY, as_of) if d["invoice_id"] == iid]
    return found[0] if found else None


def batch_of(engine: Engine, ref: str, amount: str, reason: str = "bankruptcy", **kw) -> int:
    with engine.begin() as conn:
        iid = conn.execute(select(invoices.c.id).where(invoices.c.invoice_ref == ref)).scalar_one()
        return make_batch(conn, [(iid, amount, reason)], **kw)


def post(engine: Engine, batch_id: int, day: date = AS_OF):
    approve(engine, batch_id)
    return post_batch(engine, batch_id, actor="airflow", tiers=TIERS, posting_date=day)


def assert_reconciles(engine: Engine, tmp: Path, as_of: date) -> None:
    result = reconcile.reconcile(engine, as_of, run_key=f"money-path:{as_of}", report_dir=tmp)
    assert result.break_count == 0, [b.message for b in result.breaks]


# --- scenarios --------------------------------------------------------------------------------------------------


def paid_after_charge_off(engine: Engine, tmp: Path) -> None:
    ingest(engine, tmp, AS_OF, [row("INV-CO", "1,000.00", "1,000.00"), row("INV-CO2", "1,000.00", "1,000.00")])
    assert run_charge_off(engine, POLICY, AS_OF).charged_off == 2
    # A write-off is approved from today's balance; the customer pays before it is posted.
    pending = batch_of(engine, "INV-CO", "1000.00", reason="uncollectible_after_collections")
    paid = payment_row("P-CO", NEXT_DAY, "1,000.00", "INV-CO")
    part = payment_row("P-CO2", NEXT_DAY, "400.00", "INV-CO2")
    counts = ingest(
        engine, tmp, NEXT_DAY, [row("INV-CO", "1,000.00", "0.00"), row("INV-CO2", "1,000.00", "600.00")], [paid, part]
    )
    # Charge-off is a declaration: the cash is a payment of the receivable, never recovery income.
    assert (counts["allocations_regular_inserted"], counts["allocations_recovery_inserted"]) == (2, 0)
    assert state(engine, "INV-CO") == ("paid", D("0"), D("0"), D("0"))
    assert state(engine, "INV-CO2") == ("charged_off", D("600"), D("0"), D("0"))
    report = post(engine, pending, NEXT_DAY)
    assert (report.posted, report.skipped) == (0, 1)
    assert "paid" in report.skipped_items[0].reason or "payment" in report.skipped_items[0].reason
    assert decision_of(engine, "INV-CO", NEXT_DAY) is None  # not a live receivable any more
    assert lines(engine, "writeoff") == [] and lines(engine, "recovery") == []
    # The GL's AR moved with the cash: +2,000 opening sync, -1,400 on the payments.
    assert lines(engine, "ar_sync") == [
        ("1100", D("2000.00"), D("0.00"), D("2000.00"), D("0.00")),
        ("2990", D("0.00"), D("2000.00"), D("0.00"), D("2000.00")),
        ("2990", D("1400.00"), D("0.00"), D("1400.00"), D("0.00")),
        ("1100", D("0.00"), D("1400.00"), D("0.00"), D("1400.00")),
    ]
    assert_reconciles(engine, tmp, NEXT_DAY)


def unapplied_cash(engine: Engine, tmp: Path) -> None:
    ingest(engine, tmp, AS_OF, [row("INV-U", "500.00", "500.00", bankrupt=True)])
    assert post(engine, batch_of(engine, "INV-U", "500.00")).posted == 1
    ingest(
        engine,
        tmp,
        NEXT_DAY,
        [row("INV-U", "500.00", "500.00", bankrupt=True)],
        [payment_row("P-U", NEXT_DAY, "700.00", "INV-U")],
    )
    assert state(engine, "INV-U") == ("recovered", D("0"), D("500"), D("500"))
    assert lines(engine, "recovery") == [
        ("1000", D("500.00"), D("0.00"), D("500.00"), D("0.00")),
        ("4900", D("0.00"), D("500.00"), D("0.00"), D("500.00")),
    ]
    assert lines(engine, "unapplied_cash") == [
        ("1000", D("200.00"), D("0.00"), D("200.00"), D("0.00")),
        ("2100", D("0.00"), D("200.00"), D("0.00"), D("200.00")),
    ]
    assert account_balance(engine, "US01", "1000") == (D("700.00"), D("700.00"))  # GL cash = cash received
    assert_reconciles(engine, tmp, NEXT_DAY)


def reversed_not_reproposed(engine: Engine, tmp: Path) -> None:
    ingest(engine, tmp, AS_OF, [row("INV-R", "800.00", "800.00", bankrupt=True)])
    assert decision_of(engine, "INV-R", AS_OF)["rule"] == "customer_bankrupt"
    assert post(engine, batch_of(engine, "INV-R", "800.00")).posted == 1
    with engine.begin() as conn:
        reverse_writeoff(
            conn,
            reason="dispute_resolved",
            note="customer emerged from bankruptcy",
            requested_by="ar_clerk",
            approved_by="ar_manager",
            posting_date=AS_OF,
            invoice_ref="INV-R",
            entity_code="US01",
        )
    assert lines(engine, "reversal") == [  # the write-off's lines, sides swapped
        ("6110", D("0.00"), D("800.00"), D("0.00"), D("800.00")),
        ("1100", D("800.00"), D("0.00"), D("800.00"), D("0.00")),
    ]
    # The source still shows the invoice open: the ledger keeps 'reversed', and selection holds it back.
    ingest(engine, tmp, NEXT_DAY, [row("INV-R", "800.00", "800.00", bankrupt=True)])
    assert state(engine, "INV-R") == ("reversed", D("800"), D("0"), D("0"))
    held = decision_of(engine, "INV-R", NEXT_DAY)
    assert (held["outcome"], held["rule"]) == ("excluded", "reversed_hold"), held
    assert json.loads(held["evidence"])["reversed_on"] == AS_OF.isoformat()  # the evidence says why
    assert_reconciles(engine, tmp, NEXT_DAY)
    with engine.begin() as conn:
        clear_reversal(conn, invoice_ref="INV-R", entity_code="US01", reason="trustee confirmed", actor="controller")
    assert state(engine, "INV-R")[0] == "open"
    cleared = decision_of(engine, "INV-R", NEXT_DAY)
    assert (cleared["outcome"], cleared["rule"]) == ("candidate", "customer_bankrupt"), cleared


def two_partials_without_snapshot(engine: Engine, tmp: Path) -> None:
    with engine.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), ref="INV-P", amount="1000.00")
        first = make_batch(conn, [(iid, "300.00", "settlement_remainder")])
        second = make_batch(conn, [(iid, "300.00", "settlement_remainder")])
    assert post(engine, first).posted == 1
    report = post(engine, second)
    assert (report.posted, report.skipped) == (0, 1)
    assert "another write-off of this invoice" in report.skipped_items[0].reason
    assert state(engine, "INV-P") == ("open", D("700"), D("300"), D("0"))
    assert lines(engine, "writeoff") == [
        ("6130", D("300.00"), D("0.00"), D("300.00"), D("0.00")),
        ("1100", D("0.00"), D("300.00"), D("0.00"), D("300.00")),
    ]
    with engine.begin() as conn:  # the opening AR the factory invoice stands for
        f.opening_ar(conn, "US01", "USD", "1000.00", AS_OF)
    assert_reconciles(engine, tmp, AS_OF)


def ar_sync_rounds_half_up(engine: Engine, tmp: Path) -> None:
    # 10.03 EUR at 1.5 = 15.045 USD: half-up 15.05 (half-even would book 15.04 and leave -0.01 after the write-off).
    ingest(engine, tmp, AS_OF, [row("INV-FX", "10.03", "10.03", bankrupt=True, fx="1.5", cur="EUR")])
    assert lines(engine, "ar_sync")[0] == ("1100", D("10.03"), D("0.00"), D("15.05"), D("0.00"))
    assert post(engine, batch_of(engine, "INV-FX", "10.03", currency="EUR")).posted == 1
    assert lines(engine, "writeoff")[1] == ("1100", D("0.00"), D("10.03"), D("0.00"), D("15.05"))
    assert account_balance(engine, "US01", "1100") == (D("0.00"), D("0.00"))
    assert_reconciles(engine, tmp, AS_OF)


def allowance_same_day(engine: Engine, tmp: Path) -> None:
    with engine.begin() as conn:
        f.entity(conn, "EU01", "EUR", method="allowance")
        cid = f.customer(conn, "EU01")
        a = f.invoice(conn, cid, entity_code="EU01", currency="EUR", ref="INV-A1", amount="1000.00", days_past_due=400)
        f.invoice(conn, cid, entity_code="EU01", currency="EUR", ref="INV-A2", amount="2000.00", days_past_due=400)
        f.opening_ar(conn, "EU01", "EUR", "3000.00", AS_OF)
        f.fund_allowance(conn, "EU01", "EUR", "500.00", AS_OF - timedelta(days=30))
    config = source_config.load()
    age(engine, config, AS_OF)  # the ingest's snapshot: 3,000 in 365+
    # Month end: the day's write-off is posted after the snapshot ...
    with engine.begin() as conn:
        batch = make_batch(
            conn, [(a, "1000.00", "bankruptcy")], entity="EU01", currency="EUR", allowance_shortfall="fund"
        )
    assert post(engine, batch).posted == 1
    # ... then the estimate runs: 90% of the 2,000 still open, not of the 3,000 the snapshot saw.
    result = run_allowance(engine, AS_OF, actor="month-end")
    (pair,) = result.pairs
    assert pair.required == D("1800.00"), pair.summary()
    with engine.connect() as conn:
        stored = conn.execute(
            select(allowance_estimates.c.open_balance).where(allowance_estimates.c.bucket == "365+")
        ).scalar_one()
    assert D(str(stored)) == D("2000")
    # Funding 500 on hand: the write-off of 1,000 first funds the 500 shortfall, then uses the reserve.
    assert lines(engine, "allowance") == [
        ("6100", D("500.00"), D("0.00"), D("500.00"), D("0.00")),
        ("1190", D("0.00"), D("500.00"), D("0.00"), D("500.00")),
        ("6100", D("500.00"), D("0.00"), D("500.00"), D("0.00")),
        ("1190", D("0.00"), D("500.00"), D("0.00"), D("500.00")),
        ("6100", D("1800.00"), D("0.00"), D("1800.00"), D("0.00")),
        ("1190", D("0.00"), D("1800.00"), D("0.00"), D("1800.00")),
    ]
    assert account_balance(engine, "EU01", "1190") == (D("-1800.00"), D("-1800.00"))
    assert_reconciles(engine, tmp, AS_OF)


def unfunded_allowance_refused(engine: Engine, tmp: Path) -> None:
    with engine.begin() as conn:
        f.entity(conn, "EU01", "EUR", method="allowance")
        iid = f.invoice(conn, f.customer(conn, "EU01"), entity_code="EU01", currency="EUR", ref="INV-NF")
        f.opening_ar(conn, "EU01", "EUR", "1000.00", AS_OF)
        batch = make_batch(conn, [(iid, "1000.00", "bankruptcy")], entity="EU01", currency="EUR")
    with pytest.raises(WriteoffError, match="allowance"):
        post(engine, batch)
    assert lines(engine, "writeoff") == [] and lines(engine, "allowance") == []
    assert state(engine, "INV-NF") == ("open", D("1000"), D("0"), D("0"))
    assert_reconciles(engine, tmp, AS_OF)


def parent_child_rechecked_at_posting(engine: Engine, tmp: Path) -> None:
    with engine.begin() as conn:
        f.entity(conn)
        parent = f.customer(conn, ref="C-PARENT")
        child = f.customer(conn, ref="C-CHILD", parent_id=parent)
        iid = f.invoice(conn, child, ref="INV-CHILD", amount="900.00", open_balance="400.00")
        conn.execute(update(invoices).where(invoices.c.id == iid).values(balance_transferred_to_parent=True))
        f.opening_ar(conn, "US01", "USD", "400.00", AS_OF)
        batch = make_batch(conn, [(iid, "400.00", "bankruptcy")])
        # After selection, the parent pays part of the balance transferred to it.
        f.payment(conn, parent, iid, "500.00", AS_OF)
    report = post(engine, batch)
    assert (report.posted, report.skipped) == (0, 1)
    assert "parent has paid" in report.skipped_items[0].reason
    with engine.connect() as conn:
        assert conn.execute(select(writeoffs.c.status).where(writeoffs.c.batch_id == batch)).scalar_one() == "skipped"
    assert lines(engine, "writeoff") == []
    assert_reconciles(engine, tmp, AS_OF)


SCENARIOS: list[Callable[[Engine, Path], None]] = [
    paid_after_charge_off,
    unapplied_cash,
    reversed_not_reproposed,
    two_partials_without_snapshot,
    ar_sync_rounds_half_up,
    allowance_same_day,
    unfunded_allowance_refused,
    parent_child_rechecked_at_posting,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_money_path(ledger: Engine, tmp_path: Path, scenario: Callable[[Engine, Path], None]) -> None:
    scenario(ledger, tmp_path)


def test_clear_reversal_cli_records_the_os_user_and_refuses_an_invoice_that_is_not_reversed(
    make_ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    from tests.conftest import ledger_url_of
    from writeoffs.cli import main

    engine = make_ledger("sqlite")
    ingest(engine, tmp_path, AS_OF, [row("INV-R", "800.00", "800.00", bankrupt=True)])
    url = ledger_url_of(engine)
    args = ["--ledger-url", url, "clear-reversal", "INV-R", "--entity", "US01", "--reason", "trustee confirmed"]
    assert main(args) == 2  # open, not reversed: nothing to clear
    assert "not 'reversed'" in capsys.readouterr().err
    assert post(engine, batch_of(engine, "INV-R", "800.00")).posted == 1
    with engine.begin() as conn:
        reverse_writeoff(
            conn,
            reason="dispute_resolved",
            requested_by="ar_clerk",
            approved_by="ar_manager",
            posting_date=AS_OF,
            invoice_ref="INV-R",
            entity_code="US01",
        )
    assert main(args) == 0
    assert state(engine, "INV-R")[0] == "open"
    with engine.connect() as conn:
        actor = conn.execute(text("SELECT actor FROM audit_log WHERE action = 'invoice.reversal_cleared'")).scalar_one()
    assert actor == f"os:{getpass.getuser()}"
