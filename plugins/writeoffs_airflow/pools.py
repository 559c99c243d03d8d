"""Airflow pools of the project, and the one list of tasks that write the ledger.

``ledger_writes`` (1 slot) serialises the tasks that change the books or the sub-ledger across *all* DAGs: an
ingest merge (with its AR sync entries), recovery booking, aging, charge-off and batch selection, posting, reversal,
the reconciliation's stored run and the month-end allowance run never overlap, whichever DAG they belong to. Each
of them still keeps its own transaction and database locks; the pool makes them queue in Airflow instead of waiting
on each other's row locks while holding a worker slot (and, on PostgreSQL, makes a lock timeout between two of them
impossible).

:data:`LEDGER_WRITERS` is the single home of "this task writes the ledger": the DAGs put those tasks into the pool
(``pool=LEDGER_WRITES``) and tests/dags/test_dag_integrity.py fails on a listed task that is not in the pool, on a
pool member that is not listed, and on a listed task that no longer exists. A new task that writes the ledger is
added here first.

The pools are created by every way of starting the project: ``make up`` (scripts/unpause_pipeline.py),
``make demo`` and the tests (scripts/airflow_local.py), docker compose (airflow-init: ``airflow pools set``). A task
whose pool does not exist is never scheduled (Airflow warns about it in the UI's DAG warnings).
"""

from __future__ import annotations

from dataclasses import dataclass

LEDGER_WRITES = "ledger_writes"


@dataclass(frozen=True)
class Pool:
    name: str
    slots: int
    description: str


POOLS: tuple[Pool, ...] = (
    Pool(
        LEDGER_WRITES,
        1,
        "AR write-offs: tasks that change the ledger (merge, posting, reversal, recoveries, reconciliation, allowance) "
        "run one at a time across all DAGs",
    ),
)

#: Every task that writes the books or the sub-ledger, as ``dag_id.task_id`` (task ids inside a task group carry
#: the group's prefix). Reading tasks, staging/validation of the raw export and the Human-in-the-loop requests
#: (which append audit rows only, and wait for people) are not in it.
LEDGER_WRITERS: frozenset[str] = frozenset(
    {
        "ar_aging_ingest.merge",  # invoices, payments, activities upsert; AR sync entries
        "ar_aging_ingest.recoveries",  # recovery entries for payments on written-off invoices
        "ar_aging_ingest.aging",  # aging snapshot of the sub-ledger
        "writeoff_candidates.charge_off",  # charge-off flags and entries
        "writeoff_candidates.select_candidates",  # write-off batches and their items
        "writeoff_approval.post_auto_batches",  # journal entries of auto-tier batches
        "writeoff_approval.batch.post",  # journal entries of approved batches
        "writeoff_reversal.reverse",  # reversal entries
        "ledger_reconciliation.run_checks",  # stored reconciliation run and its breaks
        "writeoff_kpis.allowance_estimate",  # allowance true-up entries (the KPI report itself only reads)
    }
)


def ensure_pools(client) -> list[str]:
    """Create (or correct) the project's pools through Airflow's REST API; ``client`` is an authenticated
    ``httpx.Client`` whose base URL is the API server (``http://host:port``). Returns the pool names."""
    for pool in POOLS:
        body = {"name": pool.name, "slots": pool.slots, "description": pool.description, "include_deferred": False}
        r = client.post("/api/v2/pools", json=body)
        if r.status_code == 409:  # exists: make sure it has the slots and text it should
            r = client.patch(f"/api/v2/pools/{pool.name}", json=body)
        r.raise_for_status()
    return [p.name for p in POOLS]


def create_in_metadata_db() -> list[str]:
    """Create (or correct) the pools directly in Airflow's metadata database: for a deployment's init step that runs
    after ``airflow db migrate`` and before any API server (docker compose's airflow-init)."""
    from airflow.models.pool import Pool as AirflowPool

    for pool in POOLS:
        AirflowPool.create_or_update_pool(pool.name, pool.slots, pool.description, include_deferred=False)
    return [p.name for p in POOLS]


if __name__ == "__main__":  # python -m writeoffs_airflow.pools
    print("Airflow pools:", ", ".join(create_in_metadata_db()))
