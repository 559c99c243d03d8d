"""Approval runs never strand batches: every proposed batch up to the business date is claimed, by one run only.

The finding: ``writeoff_approval`` claimed only the batches *of* its business date; while one run stayed open for
days, later days' triggers piled up, the next run kept only the newest date, and the batches of the days in between
stayed ``proposed`` forever while their invoices were skipped as "in flight".
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select

from tests.factories import entity
from tests.integration.approval_support import AS_OF, make_batch
from writeoffs.db.schema import writeoff_batches as b
from writeoffs_airflow.hitl import claim_batches


def test_batches_of_missed_days_are_claimed_once_by_the_next_run(ledger: Engine, ledger_env) -> None:
    ledger_env(ledger)
    with ledger.begin() as conn:
        entity(conn)
        older, _ = make_batch(conn, ["100.00"], tier="ar_manager", as_of=AS_OF - timedelta(days=2))
        today, _ = make_batch(conn, ["200.00"], tier="ar_manager", as_of=AS_OF)
        later, _ = make_batch(conn, ["300.00"], tier="ar_manager", as_of=AS_OF + timedelta(days=1))

    assert claim_batches(AS_OF.isoformat(), run_id="run-a") == [older, today]  # the missed day too, not the future
    assert claim_batches(AS_OF.isoformat(), run_id="run-b") == []  # never shared with a concurrent run
    assert claim_batches(AS_OF.isoformat(), run_id="run-a") == [older, today]  # a retry gets its own back
    assert claim_batches((AS_OF + timedelta(days=1)).isoformat(), run_id="run-c") == [later]
    with ledger.connect() as conn:
        rows = dict(conn.execute(select(b.c.id, b.c.dag_run_id)).all())
    assert rows == {older: "run-a", today: "run-a", later: "run-c"}
