"""Undo a write-off: mirror entry linked to the original, receivable reinstated, never twice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import ledger as gl
from writeoffs.db.schema import invoices, journal_entries, journal_lines, writeoffs
from writeoffs.errors import ClosedPeriod, LedgerError, PostedEntryImmutable, SegregationOfDuties
from writeoffs.posting import post_batch
from writeoffs.recovery import book_recovery
from writeoffs.reversal import plan_reversal, reverse_writeoff

D = Decimal
LATER = date(2026, 12, 3)


def posted_worked_example(engine: Engine, amount: str = "45000.00") -> dict[str, int]:
    with engine.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], amount, "uncollectible_after_collections")])
    approve(engine, batch)
    post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    with engine.connect() as conn:
        ids["writeoff_id"] = conn.execute(select(writeoffs.c.id)).scalar_one()
    return ids


def reverse(engine: Engine, **kw):
    kw.setdefault("reason", "posted_in_error")
    kw.setdefault("requested_by", "ar_clerk")
    kw.setdefault("approved_by", "controller")
    kw.setdefault("posting_date", LATER)
    with engine.begin() as conn:
        return reverse_writeoff(conn, **kw)


def test_reversal_restores_balances_and_links_the_mirror_entry(ledger: Engine) -> None:
    ids = posted_worked_example(ledger)

    result = reverse(ledger, invoice_ref="INV-WORKED-45000")

    with ledger.connect() as conn:
        inv = conn.execute(select(invoices)).one()
        wo = conn.execute(select(writeoffs)).one()
        rev = conn.execute(select(journal_entries).where(journal_entries.c.id == result.reversal_entry_id)).one()
        rev_lines = conn.execute(
            select(journal_lines.c.account_code, journal_lines.c.debit, journal_lines.c.credit)
            .where(journal_lines.c.entry_id == rev.id)
            .order_by(journal_lines.c.line_no)
        ).all()
        balances = [ledger_balance(conn, a) for a in ("1100", "6100")]
        original = conn.execute(select(journal_entries).where(journal_entries.c.id == result.original_entry_id)).one()
    assert (inv.open_balance, inv.written_off_amount, inv.status, inv.written_off_date) == (
        D("45000"),
        D("0"),
        "reversed",
        None,
    )
    assert (wo.status, wo.journal_entry_id) == ("reversed", result.original_entry_id)
    assert (rev.reverses_entry_id, rev.source_type, rev.posting_date, rev.period) == (
        result.original_entry_id,
        "reversal",
        LATER,
        "2026-12",
    )
    assert [tuple(r) for r in rev_lines] == [("6100", D("0"), D("45000")), ("1100", D("45000"), D("0"))]
    assert balances == [D("0"), D("0")]
    assert original.status == "posted"  # untouched
    assert result.writeoff_id == ids["writeoff_id"]


def ledger_balance(conn, account: str) -> Decimal:
    return gl.account_balance(conn, "US01", account, "USD")


def test_second_reversal_is_refused_but_a_retried_request_replays(ledger: Engine) -> None:
    ids = posted_worked_example(ledger)
    first = reverse(ledger, writeoff_id=ids["writeoff_id"], request_id="manual__2026-12-03")

    replay = reverse(ledger, writeoff_id=ids["writeoff_id"], request_id="manual__2026-12-03")
    with pytest.raises(LedgerError, match="already reversed"):
        reverse(ledger, writeoff_id=ids["writeoff_id"], request_id="someone-else")
    with pytest.raises(LedgerError, match="already reversed"):
        reverse(ledger, invoice_ref="INV-WORKED-45000")

    assert replay.replayed and replay.reversal_entry_id == first.reversal_entry_id
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 2
        assert conn.execute(select(invoices.c.open_balance)).scalar_one() == D("45000")


def test_the_journal_itself_refuses_editing_instead_of_reversing(ledger: Engine) -> None:
    posted_worked_example(ledger)
    with pytest.raises(PostedEntryImmutable):
        with ledger.begin() as conn:
            try:
                conn.execute(journal_lines.update().values(debit=D("1")).where(journal_lines.c.debit > 0))
            except Exception as exc:  # translate the trigger's refusal the way the ledger does
                raise gl.translate(exc) from exc


def test_reversal_into_a_closed_period_is_refused(ledger: Engine) -> None:
    posted_worked_example(ledger)
    with ledger.begin() as conn:
        gl.close_period(conn, "US01", "2026-12", actor="controller")
    with pytest.raises(ClosedPeriod):
        reverse(ledger, invoice_ref="INV-WORKED-45000")
    with ledger.connect() as conn:
        assert conn.execute(select(writeoffs.c.status)).scalar_one() == "posted"


def test_reversal_refused_when_recoveries_exist(ledger: Engine) -> None:
    ids = posted_worked_example(ledger)
    with ledger.begin() as conn:
        book_recovery(conn, ids["invoice_id"], "100.00", LATER, "PAY-R1", "ar_clerk")
    with pytest.raises(LedgerError, match="reverse the recovery first"):
        reverse(ledger, invoice_ref="INV-WORKED-45000")


def test_partial_writeoff_reversal_reopens_only_its_amount(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, ref="INV-P", amount="1000.00", days_past_due=400)
        batch = make_batch(conn, [(inv, "300.00", "settlement_remainder")])
    approve(ledger, batch)
    post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)

    reverse(ledger, invoice_ref="INV-P", entity_code="US01")

    with ledger.connect() as conn:
        row = conn.execute(select(invoices)).one()
    assert (row.open_balance, row.written_off_amount, row.status) == (D("1000"), D("0"), "reversed")


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        # The attack: the requester names themselves (or anyone) as approver.
        ({"requested_by": "controller", "approved_by": "controller"}, SegregationOfDuties, "cannot approve it"),
        ({"requested_by": "ar_clerk", "approved_by": "CONTROLLER "}, None, None),  # same person, any spelling: ok
        # An approver below the tier entitled to 45,000 USD (controller or higher).
        ({"approved_by": "ar_manager"}, SegregationOfDuties, "tier 'controller' or higher decides"),
        ({"approved_by": "mallory"}, SegregationOfDuties, "may not approve the reversal of 45000"),
        ({"reason": "because"}, LedgerError, "not in the catalogue"),
        ({"approved_by": ""}, LedgerError, "authenticated requester and approver"),
    ],
)
def test_reversal_is_a_controlled_change(ledger: Engine, kw: dict, error: type | None, message: str | None) -> None:
    posted_worked_example(ledger)
    if error is None:
        reverse(ledger, invoice_ref="INV-WORKED-45000", **kw)
        return
    with pytest.raises(error, match=message):
        reverse(ledger, invoice_ref="INV-WORKED-45000", **kw)
    with ledger.connect() as conn:
        assert conn.execute(select(writeoffs.c.status)).scalar_one() == "posted"
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 1  # the write-off


def test_plan_names_the_entitled_approvers_without_the_requester(ledger: Engine) -> None:
    posted_worked_example(ledger)
    with ledger.connect() as conn:
        plan = plan_reversal(conn, reason="duplicate", requested_by="controller", invoice_ref="INV-WORKED-45000")
        assert (plan.tier, plan.approvers, plan.amount) == ("controller", ("cfo",), D("45000"))
        plan = plan_reversal(conn, reason="duplicate", requested_by="ar_clerk", invoice_ref="INV-WORKED-45000")
        assert plan.approvers == ("controller", "cfo")
        with pytest.raises(LedgerError, match="not in the catalogue"):
            plan_reversal(conn, reason="oops", requested_by="ar_clerk", invoice_ref="INV-WORKED-45000")
