"""Money is exact on both databases (issue 12, item 4).

SQLite used to store NUMERIC as REAL: ``99999999999999.99`` (MAX_AMOUNT, 16 significant digits) came back as
``99999999999999.9844``, the GL booked that, and the balance trigger (``ROUND(SUM(debit) - SUM(credit), 4)`` on
floats) could not even tell ``...99`` from ``...98``. These tests run the amounts through the ledger's real paths on
both databases: invoice -> write-off -> journal lines -> trial balance -> reconciliation, sums of many amounts, the
balance trigger, and the refusal (never a rounding) of what cannot be stored exactly.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import ledger as gl
from writeoffs import reconcile
from writeoffs.beancount_export import trial_balance
from writeoffs.db.money import from_db, to_db
from writeoffs.db.schema import aging_snapshots, invoices, journal_entries, journal_lines, writeoffs
from writeoffs.errors import InvalidAmount
from writeoffs.money import MAX_AMOUNT
from writeoffs.posting import post_batch

BIG = MAX_AMOUNT  # 99999999999999.99: the largest amount the ledger accepts
OPENED = date(2026, 10, 31)


def _written_off_ledger(engine: Engine, amounts: list[D]) -> tuple[list[int], int]:
    """Invoices of ``amounts`` with their opening AR in the GL, written off in one approved and posted batch."""
    with engine.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        ids = [f.invoice(conn, cid, amount=a, days_past_due=400) for a in amounts]
        f.opening_ar(conn, "US01", "USD", str(sum(amounts, D(0))), OPENED)
        batch = make_batch(
            conn, [(i, a, "uncollectible_after_collections") for i, a in zip(ids, amounts, strict=True)], tier="cfo"
        )
    approve(engine, batch, approver="cfo")
    report = post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    assert (report.posted, report.skipped) == (len(amounts), 0)
    return ids, batch


def test_max_amount_goes_through_the_ledger_to_the_cent(ledger: Engine, tmp_path: Path) -> None:
    amounts = [BIG, D("0.01"), D("12345678901.23")]
    ids, batch = _written_off_ledger(ledger, amounts)
    total = sum(amounts, D(0))
    with ledger.connect() as conn:
        got = dict(
            conn.execute(select(invoices.c.id, invoices.c.written_off_amount).where(invoices.c.id.in_(ids))).all()
        )
        assert [got[i] for i in ids] == amounts
        assert conn.execute(select(writeoffs.c.amount).order_by(writeoffs.c.id)).scalars().all() == amounts
        debits = conn.execute(
            select(journal_lines.c.debit, journal_lines.c.functional_debit)
            .join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id)
            .where(journal_entries.c.batch_id == batch, journal_lines.c.debit > 0)
            .order_by(journal_lines.c.id)
        ).all()
        assert [tuple(r) for r in debits] == [(a, a) for a in amounts]
        # Trial balance: typed SUM (ledger) and raw-SQL SUM (beancount export) agree to the cent.
        assert gl.account_balance(conn, "US01", "6100", "USD") == total
        assert gl.account_balance(conn, "US01", "1100", "USD") == 0
        tb = {(acct, cur): amt for _, acct, cur, amt in trial_balance(conn, "transaction", AS_OF)}
        assert tb[("6100", "USD")] == total
        assert tb[("1100", "USD")] == 0
    result = reconcile.reconcile(ledger, AS_OF, run_key="exact-money", report_dir=tmp_path)
    assert result.break_count == 0, [b.message for b in result.breaks]


def test_a_one_cent_difference_on_a_max_amount_is_a_break(ledger: Engine, tmp_path: Path) -> None:
    """The sub-ledger says BIG - 0.01 is open, the GL says BIG: reconciliation must see the cent."""
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        f.invoice(conn, cid, amount=BIG, open_balance=BIG - D("0.01"), days_past_due=10)
        f.opening_ar(conn, "US01", "USD", str(BIG), OPENED)
    result = reconcile.reconcile(ledger, AS_OF, run_key="exact-money-cent", report_dir=tmp_path)
    diffs = [b.difference for b in result.breaks if b.check == "subledger_vs_gl"]
    assert [abs(d) for d in diffs] == [D("0.01")]


def _snapshot_rows(conn, values: list[D]) -> None:
    """One aging snapshot row per value (one invoice, one day each): a money column with many rows to sum."""
    cid = f.customer(conn)
    inv = f.invoice(conn, cid, amount="1.00", days_past_due=10)
    conn.execute(
        insert(aging_snapshots),
        [
            {
                "as_of_date": date(2020, 1, 1) + timedelta(days=n),
                "invoice_id": inv,
                "entity_code": "US01",
                "customer_id": cid,
                "currency": "USD",
                "days_past_due": 10,
                "bucket": "1-30",
                "open_balance": v,
            }
            for n, v in enumerate(values)
        ],
    )


def test_many_small_amounts_sum_exactly(ledger: Engine) -> None:
    """1,000 x 0.1 + 1,000 x 0.0001 + 50 x 12345678901.23: summed as doubles this is ...161.5996, not ...161.6."""
    values = [D("0.1")] * 1000 + [D("0.0001")] * 1000 + [D("12345678901.23")] * 50
    with ledger.begin() as conn:
        f.entity(conn)
        _snapshot_rows(conn, values)
    with ledger.connect() as conn:
        typed = conn.execute(select(func.sum(aging_snapshots.c.open_balance))).scalar_one()
        raw = conn.execute(text("SELECT SUM(open_balance) FROM aging_snapshots")).scalar_one()
        tenths = conn.execute(
            select(func.sum(aging_snapshots.c.open_balance)).where(aging_snapshots.c.open_balance == D("0.1"))
        ).scalar_one()
    assert typed == D("617283945161.6")
    assert from_db(ledger.dialect, raw) == D("617283945161.6")
    assert tenths == D("100")


def test_a_sum_beyond_what_sqlite_holds_exactly_fails_instead_of_drifting(make_ledger) -> None:
    engine = make_ledger("sqlite")
    with engine.begin() as conn:
        f.entity(conn)
        _snapshot_rows(conn, [D("900000000000000")] * 2)  # each fits in int64 at scale 4, their sum does not
    with engine.connect() as conn, pytest.raises(OperationalError, match="integer overflow"):
        conn.execute(select(func.sum(aging_snapshots.c.open_balance))).scalar_one()


def test_amounts_that_cannot_be_stored_exactly_are_refused_not_rounded(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
    for bad, why in ((D("1.00005"), "more than 4 decimals"),):
        with ledger.begin() as conn, pytest.raises((InvalidAmount, StatementError), match=why):
            f.invoice(conn, cid, amount=bad)
    huge = D("9999999999999999.99")  # the example: NUMERIC(20, 4) holds it, an int64 at scale 4 does not
    if ledger.dialect.name == "sqlite":
        with ledger.begin() as conn, pytest.raises((InvalidAmount, StatementError), match="beyond what the SQLite"):
            f.invoice(conn, cid, amount=huge)
    else:
        with ledger.begin() as conn:
            inv = f.invoice(conn, cid, amount=huge)
            assert conn.execute(select(invoices.c.amount).where(invoices.c.id == inv)).scalar_one() == huge
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == (
            0 if ledger.dialect.name == "sqlite" else 1
        )


def test_balance_trigger_sees_a_cent_on_a_max_amount(ledger: Engine) -> None:
    """Debit BIG, credit BIG - 0.01: as doubles both are 99999999999999.984375; the ledger must refuse to post it."""
    with ledger.begin() as conn:
        f.entity(conn)
    zero = D(0)
    with pytest.raises(IntegrityError, match="ledger: unbalanced"), ledger.begin() as conn:
        entry_id = conn.execute(
            insert(journal_entries)
            .values(
                idempotency_key="manual:cent",
                entity_code="US01",
                posting_date=AS_OF,
                period="2026-11",
                source_type="manual",
            )
            .returning(journal_entries.c.id)
        ).scalar_one()
        line = {"entry_id": entry_id, "entity_code": "US01", "currency": "USD", "functional_currency": "USD"}
        conn.execute(
            insert(journal_lines),
            [
                {**line, "line_no": 1, "account_code": "6100", "debit": BIG, "credit": zero}
                | {"functional_debit": BIG, "functional_credit": zero},
                {**line, "line_no": 2, "account_code": "1100", "debit": zero, "credit": BIG - D("0.01")}
                | {"functional_debit": zero, "functional_credit": BIG},
            ],
        )
        conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = :i"), {"i": entry_id})
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 0


def test_raw_sql_binds_and_reads_money_through_db_money(ledger: Engine) -> None:
    """Raw SQL gets the stored representation; ``to_db``/``from_db`` are the one way in and out."""
    with ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        inv = f.invoice(conn, cid, amount="10.00")
        conn.execute(
            text("UPDATE invoices SET open_balance = open_balance - :x WHERE id = :i"),
            {"x": to_db(conn, D("0.0001")), "i": inv},
        )
        raw = conn.execute(text("SELECT open_balance FROM invoices WHERE id = :i"), {"i": inv}).scalar_one()
        typed = conn.execute(select(invoices.c.open_balance).where(invoices.c.id == inv)).scalar_one()
    assert from_db(conn, raw) == typed == D("9.9999")
    if ledger.dialect.name == "sqlite":
        assert raw == 99999  # integer ten-thousandths
        with pytest.raises(InvalidAmount, match="as float"):
            from_db(conn, 9.9999)  # a REAL is never taken for money
