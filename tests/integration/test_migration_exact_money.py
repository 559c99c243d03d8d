"""Migration 0007 converts an existing SQLite ledger's REAL amounts into exact integer ten-thousandths.

The ledger is created at 0006 (amounts stored the old way, as REAL, by raw SQL exactly as the old code left them),
upgraded, and read back through the typed columns and through raw SQL; the balance and immutability triggers still
hold afterwards. On PostgreSQL the revision is a no-op (NUMERIC was exact already).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from writeoffs import ledger
from writeoffs.db import migrate
from writeoffs.db.engine import make_engine
from writeoffs.db.schema import invoices, journal_lines

#: Amounts as the old SQLite storage held them (floats). Up to 15 significant digits a double gives the decimal back
#: (its shortest round-trip text); MAX_AMOUNT's 16 digits were already lost when stored and cannot be recovered.
AMOUNTS = {"INV-A": "1234567890123.45", "INV-B": "0.1", "INV-C": "45000", "INV-D": "0.0001", "INV-E": "19.99"}
DAY = date(2026, 11, 24)


@pytest.fixture
def old_ledger(tmp_path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        ledger.bootstrap_entity(
            conn,
            code="US01",
            name="US",
            functional_currency="USD",
            periods_from=date(2026, 1, 1),
            periods_to=date(2026, 12, 31),
        )
        conn.execute(
            text("INSERT INTO customers (entity_code, customer_ref, name) VALUES ('US01', 'C1', 'Customer 1')")
        )
        for ref, amount in AMOUNTS.items():
            conn.execute(
                text(
                    "INSERT INTO invoices (entity_code, invoice_ref, customer_id, invoice_date, due_date, currency,"
                    " amount, open_balance, fx_rate, status)"
                    " VALUES ('US01', :r, 1, '2025-01-01', '2025-01-31', 'USD', :a, :a, 1.0856, 'open')"
                ),
                {"r": ref, "a": float(amount)},  # what SQLAlchemy's Numeric bound on SQLite before 0007
            )
        # A posted entry whose lines are floats: 0.1 + 0.2 against 0.3 balanced only after ROUND(.., 4).
        conn.execute(
            text(
                "INSERT INTO journal_entries (idempotency_key, entity_code, posting_date, period, source_type)"
                " VALUES ('manual:old', 'US01', :d, '2026-11', 'manual')"
            ),
            {"d": DAY},
        )
        for n, (account, dr, cr) in enumerate((("6100", 0.1, 0.0), ("6100", 0.2, 0.0), ("1100", 0.0, 0.3)), 1):
            conn.execute(
                text(
                    "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
                    " functional_currency, functional_debit, functional_credit)"
                    " VALUES (1, :n, 'US01', :a, 'USD', :dr, :cr, 'USD', :dr, :cr)"
                ),
                {"n": n, "a": account, "dr": dr, "cr": cr},
            )
        conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = 1"))
    yield engine
    engine.dispose()


def test_upgrade_converts_float_amounts_exactly_and_keeps_the_triggers(old_ledger: Engine) -> None:
    with old_ledger.connect() as conn:
        assert conn.execute(text("SELECT typeof(amount) FROM invoices WHERE invoice_ref = 'INV-B'")).scalar() == "real"

    migrate.upgrade(old_ledger)

    with old_ledger.connect() as conn:
        got = dict(conn.execute(select(invoices.c.invoice_ref, invoices.c.amount)).all())
        assert got == {ref: D(a) for ref, a in AMOUNTS.items()}
        raw = dict(conn.execute(text("SELECT invoice_ref, open_balance FROM invoices")).all())
        assert raw == {ref: int(D(a) * 10000) for ref, a in AMOUNTS.items()}  # integer ten-thousandths
        assert conn.execute(text("SELECT fx_rate FROM invoices WHERE invoice_ref = 'INV-A'")).scalar() == 1.0856
        lines = conn.execute(select(journal_lines.c.debit, journal_lines.c.credit).order_by(journal_lines.c.id)).all()
        assert [tuple(r) for r in lines] == [(D("0.1"), 0), (D("0.2"), 0), (0, D("0.3"))]
        kinds = conn.execute(text("SELECT DISTINCT typeof(debit) || typeof(functional_credit) FROM journal_lines"))
        assert kinds.scalars().all() == ["integerinteger"]
    # The posted entry stays immutable (its guard was dropped for the conversion only).
    with pytest.raises(IntegrityError, match="immutable"), old_ledger.begin() as conn:
        conn.execute(text("UPDATE journal_lines SET debit = debit + 1 WHERE id = 1"))
    # The balance trigger compares integers: one ten-thousandth off is refused.
    with pytest.raises(IntegrityError, match="unbalanced"), old_ledger.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO journal_entries (idempotency_key, entity_code, posting_date, period, source_type)"
                " VALUES ('manual:new', 'US01', :d, '2026-11', 'manual')"
            ),
            {"d": DAY},
        )
        for n, (account, dr, cr) in enumerate((("6100", 30001, 0), ("1100", 0, 30000)), 1):
            conn.execute(
                text(
                    "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
                    " functional_currency, functional_debit, functional_credit)"
                    " VALUES (2, :n, 'US01', :a, 'USD', :dr, :cr, 'USD', :dr, :cr)"
                ),
                {"n": n, "a": account, "dr": dr, "cr": cr},
            )
        conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = 2"))


def test_downgrade_gives_the_old_storage_back(old_ledger: Engine) -> None:
    migrate.upgrade(old_ledger)
    migrate.downgrade(old_ledger, "0006")
    with old_ledger.connect() as conn:
        raw = dict(conn.execute(text("SELECT invoice_ref, amount FROM invoices")).all())
        assert raw == {ref: float(a) for ref, a in AMOUNTS.items()}
        assert conn.execute(text("SELECT SUM(debit) FROM journal_lines")).scalar() == pytest.approx(0.3)
    migrate.upgrade(old_ledger)  # and up again, to the same exact values
    with old_ledger.connect() as conn:
        got = dict(conn.execute(select(invoices.c.invoice_ref, invoices.c.amount)).all())
    assert got == {ref: D(a) for ref, a in AMOUNTS.items()}


def test_postgresql_is_left_as_it_is(pg_ledger: Engine) -> None:
    """0007 changes nothing on PostgreSQL: money stays NUMERIC(20, 4) holding the decimal itself."""
    with pg_ledger.connect() as conn:
        kind = conn.execute(
            text(
                "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'journal_lines' AND column_name = 'debit'"
            )
        ).one()
    assert tuple(kind) == ("numeric", 20, 4)
