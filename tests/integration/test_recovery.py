"""Recoveries on written-off invoices: the worked example's $30,000, the allowance variant, the ceiling."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import ledger as gl
from writeoffs.db.schema import invoices, journal_lines, recoveries
from writeoffs.errors import AmountExceedsBalance, LedgerError
from writeoffs.posting import post_batch
from writeoffs.recovery import book_recovery

D = Decimal
SIX_MONTHS_LATER = date(2027, 5, 20)


def written_off(engine: Engine, *, method: str = "direct") -> int:
    with engine.begin() as conn:
        if method == "direct":
            iid = f.worked_example(conn)["invoice_id"]
        else:
            f.entity(conn, method="allowance")
            f.fund_allowance(conn, "US01", "USD", "45000.00")
            iid = f.invoice(conn, f.customer(conn), ref="INV-WORKED-45000", amount="45000.00", days_past_due=400)
        batch = make_batch(conn, [(iid, "45000.00", "uncollectible_after_collections")])
    approve(engine, batch)
    post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    return iid


def lines(conn, entry_id: int) -> list[tuple]:
    return [
        tuple(r)
        for r in conn.execute(
            select(journal_lines.c.account_code, journal_lines.c.debit, journal_lines.c.credit)
            .where(journal_lines.c.entry_id == entry_id)
            .order_by(journal_lines.c.line_no)
        )
    ]


def test_worked_example_recovery_is_income_and_the_rest_stays_written_off(ledger: Engine) -> None:
    iid = written_off(ledger)

    with ledger.begin() as conn:
        result = book_recovery(conn, iid, "30000.00", SIX_MONTHS_LATER, "PAY-NEWOWNER", "ar_clerk")

    with ledger.connect() as conn:
        assert lines(conn, result.journal_entry_id) == [("1000", D("30000"), D("0")), ("4900", D("0"), D("30000"))]
        inv = conn.execute(select(invoices)).one()
        assert gl.account_balance(conn, "US01", "4900", "USD") == D("-30000")
        assert gl.account_balance(conn, "US01", "6100", "USD") == D("45000")
    assert (inv.written_off_amount, inv.recovered_amount, inv.open_balance, inv.status) == (
        D("45000"),
        D("30000"),
        D("0"),
        "partially_recovered",
    )
    assert inv.written_off_amount - inv.recovered_amount == D("15000")  # remaining $15,000 stays written off


def test_allowance_method_reinstates_then_collects(ledger: Engine) -> None:
    iid = written_off(ledger, method="allowance")

    with ledger.begin() as conn:
        result = book_recovery(conn, iid, "45000.00", SIX_MONTHS_LATER, "PAY-1", "ar_clerk")

    with ledger.connect() as conn:
        assert lines(conn, result.journal_entry_id) == [
            ("1100", D("45000"), D("0")),
            ("1190", D("0"), D("45000")),
            ("1000", D("45000"), D("0")),
            ("1100", D("0"), D("45000")),
        ]
        assert conn.execute(select(invoices.c.status)).scalar_one() == "recovered"


def test_recovery_never_exceeds_what_was_written_off(ledger: Engine) -> None:
    iid = written_off(ledger)
    with ledger.begin() as conn:
        book_recovery(conn, iid, "30000.00", SIX_MONTHS_LATER, "PAY-1", "ar_clerk")

    with pytest.raises(AmountExceedsBalance, match=r"exceeds what is written off and not yet recovered \(15000.0000"):
        with ledger.begin() as conn:
            book_recovery(conn, iid, "15000.01", SIX_MONTHS_LATER, "PAY-2", "ar_clerk")
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(recoveries)).scalar_one() == 1


def test_recovery_is_idempotent_per_payment_and_invoice(ledger: Engine) -> None:
    iid = written_off(ledger)
    with ledger.begin() as conn:
        first = book_recovery(conn, iid, "100.00", SIX_MONTHS_LATER, "PAY-1", "ar_clerk")
    with ledger.begin() as conn:
        again = book_recovery(conn, iid, "100.00", SIX_MONTHS_LATER, "PAY-1", "ar_clerk")
    with pytest.raises(LedgerError, match="already booked"):
        with ledger.begin() as conn:
            book_recovery(conn, iid, "200.00", SIX_MONTHS_LATER, "PAY-1", "ar_clerk")

    assert again.replayed and again.recovery_id == first.recovery_id
    with ledger.connect() as conn:
        assert conn.execute(select(invoices.c.recovered_amount)).scalar_one() == D("100")


def test_recovery_on_an_invoice_never_written_off_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), amount="500.00")
    with pytest.raises(AmountExceedsBalance):
        with ledger.begin() as conn:
            book_recovery(conn, iid, "1.00", AS_OF, "PAY-X", "ar_clerk")
