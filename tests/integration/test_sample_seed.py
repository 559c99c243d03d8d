"""seed_ledger on SQLite and PostgreSQL: the ledger holds exactly the generated sample and the GL ties to it."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text

from tests import factories
from writeoffs import audit
from writeoffs import ledger as gl
from writeoffs.db.schema import (
    audit_log,
    collection_activities,
    customers,
    holds,
    invoices,
    journal_entries,
    payment_allocations,
    payments,
)
from writeoffs.errors import LedgerError
from writeoffs.sample import SampleAlreadySeeded, SampleSpec, seed_ledger, write_sample
from writeoffs.sample.seed import _bulk_begin, _bulk_end, _copy

AS_OF = date(2026, 11, 24)
SPEC = SampleSpec(invoices=3_000, seed=11, as_of=AS_OF)
CENT = Decimal("0.01")


def _count(conn, table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _dec(value: object) -> Decimal:
    # SQLite hands NUMERIC back through a float: quantise to the cent before comparing (PostgreSQL is exact).
    return Decimal(str(value)).quantize(CENT)


def test_seed_loads_exactly_the_generated_sample(ledger: Engine, tmp_path: Path) -> None:
    result = seed_ledger(ledger, SPEC)
    t = result.details["totals"]
    assert not result.already_seeded
    with ledger.connect() as conn:
        assert _count(conn, customers) == t["customers"] == 150
        assert _count(conn, invoices) == t["invoices"] == 3_000
        assert _count(conn, payments) == t["payments"]
        assert _count(conn, payment_allocations) == t["payment_allocations"] > t["payments"] > 0
        assert _count(conn, collection_activities) == t["activities"]
        assert _count(conn, holds) == t["holds"]
        status = dict(conn.execute(select(invoices.c.status, func.count()).group_by(invoices.c.status)).all())
        assert status == {"open": 3_000 - t["paid_invoices"], "paid": t["paid_invoices"]}
        ledger_rows = {
            r.invoice_ref: (
                r.entity_code,
                r.customer_ref,
                str(r.due_date),
                r.currency,
                _dec(r.amount),
                _dec(r.open_balance),
            )
            for r in conn.execute(
                select(
                    invoices.c.invoice_ref,
                    invoices.c.entity_code,
                    customers.c.customer_ref,
                    invoices.c.due_date,
                    invoices.c.currency,
                    invoices.c.amount,
                    invoices.c.open_balance,
                ).join(customers, customers.c.id == invoices.c.customer_id)
            )
        }
        n_alloc_by_invoice = dict(
            conn.execute(
                select(invoices.c.invoice_ref, func.count())
                .join(payment_allocations, payment_allocations.c.invoice_id == invoices.c.id)
                .group_by(invoices.c.invoice_ref)
            ).all()
        )

    # The same rows as the files the ingestion path reads (the SQLite "billing system" source).
    write_sample(SPEC, tmp_path, ["sqlite"])
    src = sqlite3.connect(tmp_path / "source.db")
    try:
        source_rows = {
            r[0]: (r[1], r[2], r[3], r[4], Decimal(r[5]), Decimal(r[6]))
            for r in src.execute(
                "SELECT invoice_ref, entity, customer_ref, due_date, currency, amount, open_balance FROM ar_invoices"
            )
        }
        src_alloc = dict(src.execute("SELECT invoice_ref, count(*) FROM ar_payments GROUP BY invoice_ref").fetchall())
    finally:
        src.close()
    assert ledger_rows == source_rows
    assert n_alloc_by_invoice == src_alloc


def test_gl_ar_control_ties_to_the_sub_ledger_per_entity_and_currency(ledger: Engine) -> None:
    seed_ledger(ledger, SPEC)
    with ledger.connect() as conn:
        rows = conn.execute(
            select(invoices.c.entity_code, invoices.c.currency, invoices.c.open_balance, invoices.c.fx_rate)
        ).all()
        sub: dict[tuple[str, str], Decimal] = Counter()
        functional: dict[str, Decimal] = Counter()
        for r in rows:
            ob = _dec(r.open_balance)
            sub[(r.entity_code, r.currency)] += ob
            # Each invoice's open balance at its own booked rate, rounded half-up to the cent.
            functional[r.entity_code] += (ob * Decimal(str(r.fx_rate))).quantize(CENT, rounding=ROUND_HALF_UP)
        assert set(sub) == {("US01", "USD"), ("EU01", "EUR"), ("EU01", "GBP")}
        for (entity, currency), total in sub.items():
            ar = ledger_account(conn, entity, "ar_control")
            assert gl.account_balance(conn, entity, ar, currency) == total, (entity, currency)
            suspense = ledger_account(conn, entity, "suspense")
            assert gl.account_balance(conn, entity, suspense, currency) == -total
        for entity, total in functional.items():
            assert gl.account_balance(conn, entity, ledger_account(conn, entity, "ar_control")) == total
        keys = sorted(conn.execute(select(journal_entries.c.idempotency_key)).scalars())
        assert keys == ["opening:EU01:EUR:2026-11-24", "opening:EU01:GBP:2026-11-24", "opening:US01:USD:2026-11-24"]
        assert set(conn.execute(select(journal_entries.c.status)).scalars()) == {"posted"}


def ledger_account(conn, entity: str, role: str) -> str:
    return gl.account_for_role(conn, entity, role)


def test_audit_row_summarises_the_seed_and_the_chain_verifies(ledger: Engine) -> None:
    result = seed_ledger(ledger, SPEC)
    with ledger.connect() as conn:
        assert audit.verify(conn) == []
        (row,) = conn.execute(select(audit_log)).all()
    assert (row.actor, row.action, row.object_type) == ("sample-generator", "sample.seed", "ledger")
    assert row.object_id == "sample:11:3000:2026-11-24"
    assert audit.canonical_json(result.details) == row.details
    assert '"invoices":3000' in row.details and '"open_by_entity_currency"' in row.details


def test_seeding_twice_changes_nothing_and_another_spec_is_refused(ledger: Engine) -> None:
    seed_ledger(ledger, SPEC)

    def snapshot() -> tuple[int, ...]:
        with ledger.connect() as conn:
            return tuple(
                _count(conn, t)
                for t in (
                    customers,
                    invoices,
                    payments,
                    payment_allocations,
                    collection_activities,
                    holds,
                    journal_entries,
                    audit_log,
                )
            )

    before = snapshot()
    again = seed_ledger(ledger, SPEC)
    assert again.already_seeded and "nothing changed" in again.summary()
    assert snapshot() == before
    with pytest.raises(SampleAlreadySeeded, match="already holds a sample"):
        seed_ledger(ledger, SampleSpec(invoices=3_000, seed=12, as_of=AS_OF))
    assert snapshot() == before


def test_a_ledger_with_other_data_is_refused(ledger: Engine) -> None:
    with ledger.begin() as conn:
        factories.entity(conn)
        factories.customer(conn, ref="C-FOREIGN")
    with pytest.raises(SampleAlreadySeeded, match="from another source"):
        seed_ledger(ledger, SPEC)
    with ledger.connect() as conn:
        assert _count(conn, invoices) == 0 and _count(conn, audit_log) == 0


def test_holds_customers_and_the_worked_example_in_the_ledger(ledger: Engine) -> None:
    result = seed_ledger(ledger, SPEC)
    t = result.details["totals"]
    with ledger.connect() as conn:
        kinds = Counter(
            (r.hold_type, r.end_date is None, r.resolution)
            for r in conn.execute(select(holds.c.hold_type, holds.c.end_date, holds.c.resolution))
        )
        assert kinds[("dispute", True, None)] == t["disputed_invoices"] > 0
        assert kinds[("dispute", False, "won")] + kinds[("dispute", False, "lost")] > 0
        assert kinds[("payment_plan", True, None)] == t["payment_plans"] > 0
        bankrupt = conn.execute(select(customers).where(customers.c.bankruptcy_flag)).all()
        assert len(bankrupt) >= 2 and all(c.bankruptcy_date is not None for c in bankrupt)
        assert _count(conn, select(customers).where(customers.c.dissolved).subquery()) >= 2
        child = customers.alias("child")
        pairs = conn.execute(
            select(child.c.entity_code, customers.c.entity_code).join(customers, customers.c.id == child.c.parent_id)
        ).all()
        assert len(pairs) >= 6 and all(a == b for a, b in pairs)
        transferred_paid_by_parent = conn.execute(
            select(func.count(func.distinct(invoices.c.id)))
            .select_from(invoices)
            .join(child, child.c.id == invoices.c.customer_id)
            .join(payment_allocations, payment_allocations.c.invoice_id == invoices.c.id)
            .join(payments, payments.c.id == payment_allocations.c.payment_id)
            .where(invoices.c.balance_transferred_to_parent, payments.c.customer_id == child.c.parent_id)
        ).scalar_one()
        assert transferred_paid_by_parent > 0

        inv = conn.execute(select(invoices).where(invoices.c.invoice_ref == "INV-WORKED-45000")).one()
        cust = conn.execute(select(customers).where(customers.c.id == inv.customer_id)).one()
        assert (cust.customer_ref, cust.name, cust.segment, cust.entity_code) == (
            "C-NORTHWIND",
            "Northwind IT Services",
            "it_services",
            "US01",
        )
        assert (_dec(inv.amount), _dec(inv.open_balance), inv.currency, inv.status) == (
            Decimal("45000.00"),
            Decimal("45000.00"),
            "USD",
            "open",
        )
        assert inv.invoice_date == date(2025, 9, 24) and inv.due_date == inv.invoice_date + timedelta(days=30)
        acts = conn.execute(select(collection_activities).where(collection_activities.c.invoice_id == inv.id)).all()
        assert Counter(a.activity_type for a in acts) == {
            "contact_attempt": 12,
            "demand_letter": 3,
            "agency_placement": 1,
        }
        (placement,) = [a for a in acts if a.activity_type == "agency_placement"]
        assert (placement.end_date - placement.activity_date).days == 90 and placement.outcome == "unsuccessful"
        assert _count(conn, select(holds).where(holds.c.invoice_id == inv.id).subquery()) == 0
        assert (
            _count(conn, select(payment_allocations).where(payment_allocations.c.invoice_id == inv.id).subquery()) == 0
        )
        # Periods are open from the oldest invoice's month, so later postings on old invoices are possible.
        oldest = conn.execute(select(func.min(invoices.c.invoice_date))).scalar_one()
        gl.check_periods_open(conn, [_probe_entry("US01", oldest)])


def _probe_entry(entity: str, day: date):
    from writeoffs.journal import JournalEntry, JournalLine

    return JournalEntry(
        key="probe",
        entity=entity,
        posting_date=day,
        lines=(JournalLine("1100", "USD", debit=Decimal(1)), JournalLine("2990", "USD", credit=Decimal(1))),
    )


@pytest.mark.postgres
def test_postgres_bulk_mode_restores_indexes_and_sequences(pg_ledger: Engine) -> None:
    index_sql = text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname"
    )
    with pg_ledger.connect() as conn:
        before = conn.execute(index_sql).all()
    seed_ledger(pg_ledger, SPEC)
    with pg_ledger.begin() as conn:
        assert conn.execute(index_sql).all() == before
        assert conn.execute(text("SHOW session_replication_role")).scalar_one() == "origin"
        # Ids were assigned by the generator; the sequences must have moved past them.
        new_id = conn.execute(
            insert(customers)
            .values(entity_code="US01", customer_ref="C-AFTER-SEED", name="After")
            .returning(customers.c.id)
        ).scalar_one()
        assert new_id == 151


@pytest.mark.postgres
def test_postgres_bulk_mode_still_refuses_an_orphan_row(pg_ledger: Engine) -> None:
    """With FK triggers off during COPY, the set-wise validation must catch what they would have caught."""
    with pytest.raises(LedgerError, match="invoices reference a missing customers"), pg_ledger.begin() as conn:
        factories.entity(conn)
        saved = _bulk_begin(conn)
        assert saved is not None  # the test role (postgres) may use bulk mode
        _copy(
            conn,
            "invoices",
            (
                "id",
                "entity_code",
                "invoice_ref",
                "customer_id",
                "invoice_date",
                "due_date",
                "currency",
                "amount",
                "open_balance",
            ),
            "1\tUS01\tINV-ORPHAN\t999\t2026-01-01\t2026-01-31\tUSD\t10.00\t10.00\n",
        )
        _bulk_end(conn, saved)
    with pg_ledger.connect() as conn:
        assert _count(conn, invoices) == 0
