"""Planner statistics after bulk writes (writeoffs.db.stats): reconciliation plans on fresh statistics.

A ledger fresh from its first load has tables that autovacuum has not analyzed yet; reconciliation's joins planned
on them took minutes (BENCHMARKS.md). ``last_analyze`` is set only by a manual ANALYZE (autovacuum sets
``last_autoanalyze``), so these assertions do not depend on autovacuum's timing.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text

from tests.conftest import AS_OF, ledger_url_of
from writeoffs import ledger, reconcile
from writeoffs.db import stats
from writeoffs.db.engine import make_engine

pytestmark = pytest.mark.postgres

ROWS = 3_000
STAT = text(
    "SELECT s.n_mod_since_analyze, s.last_analyze, c.reltuples FROM pg_stat_user_tables s "
    "JOIN pg_class c ON c.oid = s.relid WHERE s.schemaname = current_schema() AND s.relname = :t"
)


def _bulk_customers(pg_ledger: Engine) -> None:
    """ROWS customers written and committed by another session, whose counters then reach the statistics views."""
    writer = make_engine(ledger_url_of(pg_ledger))
    try:
        with writer.begin() as conn:
            ledger.bootstrap_entity(
                conn, code="US01", name="US", functional_currency="USD", periods_from=AS_OF, periods_to=AS_OF
            )
            conn.execute(
                text(
                    "INSERT INTO customers (entity_code, customer_ref, name) "
                    "SELECT 'US01', 'C' || g, 'C' || g FROM generate_series(1, :n) g"
                ),
                {"n": ROWS},
            )
    finally:
        writer.dispose()  # a backend flushes its table counters when it ends
    deadline = time.monotonic() + 30
    while True:
        with pg_ledger.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            if conn.execute(STAT, {"t": "customers"}).one().n_mod_since_analyze >= ROWS:
                return
        assert time.monotonic() < deadline, "the writer's counters never reached pg_stat_user_tables"
        time.sleep(0.2)


def test_reconciliation_analyzes_the_tables_a_bulk_write_left_stale(pg_ledger: Engine, tmp_path) -> None:
    _bulk_customers(pg_ledger)
    with pg_ledger.connect() as conn:
        assert conn.execute(STAT, {"t": "customers"}).one().last_analyze is None
    reconcile.reconcile(pg_ledger, AS_OF, run_key="stats", report_dir=tmp_path, write_report=False)
    with pg_ledger.connect() as conn:
        after = conn.execute(STAT, {"t": "customers"}).one()
    assert after.last_analyze is not None
    assert after.reltuples == ROWS and after.n_mod_since_analyze == 0


def test_fresh_tables_are_left_alone(pg_ledger: Engine) -> None:
    _bulk_customers(pg_ledger)
    with pg_ledger.begin() as conn:
        assert "customers" in stats.analyze_stale(conn)
    with pg_ledger.begin() as conn:
        # Nothing changed since: nothing to analyze (the check runs before every reconciliation).
        assert stats.analyze_stale(conn) == []
