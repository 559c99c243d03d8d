"""Issue 19: every change of an invoice's open balance or status is an immutable, dated movement (both databases).

The movements are written by the database in the statement that changes the invoice (migration 0013); the ledger's
functions only declare why (``writeoffs.subledger.movement``). These tests drive the real functions (posting,
recovery, reversal, clearing, charge-off) and attack the history with raw SQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs import subledger
from writeoffs.db import migrate
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import invoice_movements, invoices
from writeoffs.posting import post_batch
from writeoffs.recovery import book_recovery
from writeoffs.reversal import clear_reversal, reverse_writeoff

D = Decimal
LATER = date(2026, 12, 3)


def movements(engine: Engine, invoice_id: int) -> list[tuple]:
    m = invoice_movements.c
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(m.kind, m.effective_date, m.balance_change, m.status)
                .where(m.invoice_id == invoice_id)
                .order_by(m.id)
            )
        ]


def test_each_ledger_function_leaves_its_movement(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    with ledger.begin() as conn:
        reverse_writeoff(
            conn,
            invoice_ref="INV-WORKED-45000",
            reason="posted_in_error",
            requested_by="ar_clerk",
            approved_by="controller",
            posting_date=LATER,
        )
    with ledger.begin() as conn:
        clear_reversal(
            conn, invoice_ref="INV-WORKED-45000", entity_code="US01", reason="checked", actor="lead", on=LATER
        )
    iid = ids["invoice_id"]
    invoice_date = date(2025, 9, 15)
    assert movements(ledger, iid) == [
        ("direct", invoice_date, D("45000"), "open"),  # raised by a raw INSERT (the test factory): still recorded
        ("writeoff", AS_OF, D("-45000"), "written_off"),
        ("reversal", LATER, D("45000"), "reversed"),
        ("reversal_cleared", LATER, D("0"), "open"),
    ]
    # The sum of the movements is the materialised balance.
    with ledger.connect() as conn:
        assert subledger.balances_as_of(conn, LATER, level="invoice")[0].balance == D("45000")
        assert subledger.balances_as_of(conn, AS_OF, level="invoice")[0].balance == D("0")
        assert subledger.balances_as_of(conn, AS_OF - timedelta(days=1), level="invoice")[0].balance == D("45000")


def test_a_recovery_is_a_status_movement_of_its_date(ledger: Engine) -> None:
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    with ledger.begin() as conn:
        book_recovery(conn, ids["invoice_id"], "1000.00", LATER, "PAY-1", "airflow")
    assert movements(ledger, ids["invoice_id"])[-1] == ("recovery", LATER, D("0"), "partially_recovered")


def test_a_raw_balance_change_is_recorded_as_direct(ledger: Engine) -> None:
    """Nothing moves a balance without a trace: an undeclared UPDATE is a 'direct' movement of the day."""
    with ledger.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), amount="500.00", invoice_date=date(2026, 1, 5))
    with ledger.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id == iid).values(open_balance=D("200.00")))
        conn.execute(update(invoices).where(invoices.c.id == iid).values(description="no balance change"))
    got = movements(ledger, iid)
    assert [g[0] for g in got] == ["direct", "direct"] and got[1][2] == D("-300") and len(got) == 2


def test_a_declaration_does_not_outlive_its_block(ledger: Engine) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), amount="500.00", invoice_date=date(2026, 1, 5))
    with ledger.begin() as conn:
        with subledger.movement(conn, "ingest", date(2026, 2, 1), "load 1"):
            conn.execute(update(invoices).where(invoices.c.id == iid).values(open_balance=D("400.00")))
        conn.execute(update(invoices).where(invoices.c.id == iid).values(open_balance=D("300.00")))
    assert [(k, d) for k, d, _, _ in movements(ledger, iid)][1:] == [
        ("ingest", date(2026, 2, 1)),
        ("direct", datetime.now(UTC).date()),
    ]


def test_an_unknown_movement_kind_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn, pytest.raises(Exception, match="unknown movement kind"):
        with subledger.movement(conn, "gift", AS_OF):
            pass


ATTACKS = {
    "edit a movement": "UPDATE invoice_movements SET balance_change = 0",
    "delete a movement": "DELETE FROM invoice_movements",
}
ATTRIBUTE_ATTACKS = {
    "edit an attribute change": "UPDATE invoice_attribute_changes SET invoice_id = invoice_id + 1",
    "delete an attribute change": "DELETE FROM invoice_attribute_changes",
}


@pytest.mark.parametrize("attack", list(ATTRIBUTE_ATTACKS))
def test_attribute_changes_are_recorded_and_immutable(ledger: Engine, attack: str) -> None:
    """Migration 0017: a change of an invoice's due date (or currency, customer, dates) is recorded by the database
    in the statement that makes it, even by raw SQL; a balance-only change is not one; the record cannot be undone."""
    with ledger.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), amount="500.00", invoice_date=date(2026, 1, 5))
        conn.execute(update(invoices).where(invoices.c.id == iid).values(open_balance=D("400.00")))
        conn.execute(update(invoices).where(invoices.c.id == iid).values(due_date=date(2026, 3, 1)))
    changes = "SELECT invoice_id FROM invoice_attribute_changes"
    with ledger.connect() as conn:
        assert conn.execute(text(changes)).scalars().all() == [iid]
    with pytest.raises(DBAPIError, match="ledger: invoice attribute changes are immutable"), ledger.begin() as conn:
        conn.execute(text(ATTRIBUTE_ATTACKS[attack]))
    with ledger.connect() as conn:
        assert conn.execute(text(changes)).scalars().all() == [iid]


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_movements_are_immutable(ledger: Engine, attack: str) -> None:
    with ledger.begin() as conn:
        f.entity(conn)
        f.invoice(conn, f.customer(conn), amount="500.00")
    with pytest.raises(DBAPIError, match="ledger: invoice movements are immutable"), ledger.begin() as conn:
        conn.execute(text(ATTACKS[attack]))
    with ledger.connect() as conn:
        assert conn.execute(select(invoice_movements.c.balance_change)).scalars().all() == [D("500")]


def test_sqlite_replace_cannot_rewrite_a_movement(make_ledger) -> None:
    engine = make_ledger("sqlite")
    with engine.begin() as conn:
        f.entity(conn)
        f.invoice(conn, f.customer(conn), amount="500.00")
    with pytest.raises(DBAPIError, match="ledger: invoice movements are immutable"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT OR REPLACE INTO invoice_movements (id, invoice_id, effective_date, recorded_at, kind,"
                " balance_change, status) SELECT id, invoice_id, effective_date, recorded_at, kind, 0, status"
                " FROM invoice_movements"
            )
        )


def test_sqlite_replace_cannot_rewrite_an_attribute_change(make_ledger) -> None:
    """REPLACE deletes the row in its way without firing DELETE triggers: migration 0017 refuses a colliding insert
    into the record of attribute changes (what keeps a checkpoint's copied due dates honest) as for movements."""
    engine = make_ledger("sqlite")
    with engine.begin() as conn:
        f.entity(conn)
        inv = f.invoice(conn, f.customer(conn), amount="500.00")
        conn.execute(text("UPDATE invoices SET due_date = '2026-12-31' WHERE id = :i"), {"i": inv})
        assert conn.execute(text("SELECT COUNT(*) FROM invoice_attribute_changes")).scalar() == 1
    with pytest.raises(DBAPIError, match="ledger: invoice attribute changes are immutable"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT OR REPLACE INTO invoice_attribute_changes (id, invoice_id, recorded_at)"
                " SELECT id, invoice_id, '1999-01-01 00:00:00.000000' FROM invoice_attribute_changes"
            )
        )


@pytest.mark.postgres
def test_postgres_truncate_of_movements_is_refused(pg_ledger: Engine) -> None:
    with pytest.raises(DBAPIError, match="ledger: invoice movements are immutable"), pg_ledger.begin() as conn:
        conn.execute(text("TRUNCATE invoice_movements"))


def test_postgres_movements_of_one_statement_share_one_recorded_time(pg_ledger: Engine) -> None:
    """The statement trigger formats the database's clock once per statement (migration 0015), not once per row:
    the same value in every movement a statement writes, later for a later statement."""
    with pg_ledger.begin() as conn:
        f.entity(conn)
        cust = f.customer(conn)
        ids = [f.invoice(conn, cust, amount="500.00", invoice_date=date(2026, 1, 5)) for _ in range(3)]
    with pg_ledger.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id.in_(ids)).values(open_balance=D("200.00")))
    with pg_ledger.begin() as conn:
        conn.execute(update(invoices).where(invoices.c.id.in_(ids)).values(open_balance=D("100.00")))
    m = invoice_movements.c
    with pg_ledger.connect() as conn:
        times = conn.execute(
            select(m.balance_change, m.recorded_at).where(m.invoice_id.in_(ids), m.balance_change < 0).order_by(m.id)
        ).all()
        definition = conn.execute(text("SELECT pg_get_functiondef('ledger_invoice_moved'::regproc)")).scalar_one()
    assert [t[0] for t in times] == [D("-300")] * 3 + [D("-100")] * 3
    assert len({t[1] for t in times[:3]}) == 1 and len({t[1] for t in times[3:]}) == 1
    assert times[0][1] < times[3][1]
    assert "statement_timestamp" not in definition.split("BEGIN", 1)[1]  # in the declarations only


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request, tmp_path):
    """An empty database (not a template: the migration itself is under test)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'backfill.db'}")
    else:
        schema = request.getfixturevalue("pg_schema")
        base = request.getfixturevalue("pg_admin").url.render_as_string(hide_password=False)
        engine = make_engine(schema_url(base, schema))
    yield engine
    engine.dispose()


def test_the_migration_opens_the_history_of_an_existing_ledger(fresh: Engine) -> None:
    """A ledger migrated from 0012 gets one opening movement per invoice: its balance and status, at its date."""
    migrate.upgrade(fresh, "0012")
    with fresh.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        a = f.invoice(conn, cid, amount="100.00", open_balance="40.00", invoice_date=date(2026, 1, 10))
        b = f.invoice(conn, cid, amount="70.00", open_balance="0", status="paid", invoice_date=date(2026, 2, 3))
    migrate.upgrade(fresh)
    assert movements(fresh, a) == [("opening", date(2026, 1, 10), D("40"), "open")]
    assert movements(fresh, b) == [("opening", date(2026, 2, 3), D("0"), "paid")]
    with fresh.connect() as conn:
        assert [(r.key, r.balance) for r in subledger.balances_as_of(conn, date(2026, 3, 1))] == [("US01", D("40"))]


def test_reconciliation_finds_a_history_that_was_bypassed(ledger: Engine) -> None:
    """An owner who switches the movement trigger off and edits a balance leaves a sub-ledger whose history no longer
    explains it: the reconciliation's ``movements`` check reports the invoice."""
    from writeoffs.reconcile import Tolerances, check_movements

    with ledger.begin() as conn:
        f.entity(conn)
        iid = f.invoice(conn, f.customer(conn), ref="INV-EDITED", amount="500.00")
        f.invoice(conn, f.customer(conn), amount="70.00")
    with ledger.connect() as conn:
        assert check_movements(conn, AS_OF, Tolerances()) == []
    with ledger.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE invoices DISABLE TRIGGER trg_invoices_moved_update"))
        else:
            conn.execute(text("DROP TRIGGER trg_invoices_moved_update"))
        conn.execute(update(invoices).where(invoices.c.id == iid).values(open_balance=D("1.00")))
    with ledger.connect() as conn:
        (found,) = check_movements(conn, AS_OF, Tolerances())
    assert (found.check, found.expected, found.actual) == ("movements", D("1"), D("500"))
    assert [d["ref"] for d in found.documents] == ["INV-EDITED"]
