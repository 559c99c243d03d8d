"""Which batches an approval run works on: the human-tier batches it claims, and the auto-tier batches it posts.

The approval DAG's tasks call these and only forward the result (``writeoffs_airflow.hitl.tasks``).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, select, update

from writeoffs import audit
from writeoffs.db.schema import writeoff_batches as b
from writeoffs.tiers import AUTO_TIER, SYSTEM_ACTOR

#: Statuses in which an auto-tier batch is still to be posted.
AUTO_POSTABLE = ("proposed", "awaiting_approval", "confirmed")


def claim_batches(conn: Connection, as_of: date, *, run_id: str, routed_by: str) -> list[int]:
    """Claim every proposed human-tier batch up to ``as_of`` for the run ``run_id`` (status -> awaiting_approval);
    the ids the run holds, in order.

    Up to, not only on: a batch of an earlier business date that no run claimed (the run of its day was still open,
    or failed) is claimed by the next run instead of staying ``proposed`` forever while its invoices are skipped as
    "in flight". Concurrent runs never share a batch: the claim is one conditional UPDATE, and each run then reads
    back what it holds. Idempotent: a retried task gets the batches it claimed before plus any newly proposed ones.
    """
    claimed = conn.execute(
        update(b)
        .where(b.c.as_of_date <= as_of, b.c.tier != AUTO_TIER, b.c.status == "proposed")
        .values(status="awaiting_approval", dag_run_id=run_id, routed_by=routed_by)
    ).rowcount
    ids = list(
        conn.execute(
            select(b.c.id).where(b.c.dag_run_id == run_id, b.c.status == "awaiting_approval").order_by(b.c.id)
        ).scalars()
    )
    if claimed:
        audit.append(
            conn,
            actor=SYSTEM_ACTOR,
            action="approval.batches_opened",
            object_type="approval_run",
            object_id=run_id,
            details={"as_of": as_of.isoformat(), "batch_ids": ids, "routed_by": routed_by},
        )
    return ids


def auto_batches(conn: Connection, as_of: date) -> list[int]:
    """The auto-tier batches of ``as_of`` still to be posted (no human decision: posting auto-approves them under the
    policy's tolerance)."""
    return list(
        conn.execute(
            select(b.c.id)
            .where(b.c.as_of_date == as_of, b.c.tier == AUTO_TIER, b.c.status.in_(AUTO_POSTABLE))
            .order_by(b.c.id)
        ).scalars()
    )


def batch_state(conn: Connection, batch_id: int) -> tuple[str, date]:
    """The batch's status and its business date (the posting date of its entries)."""
    status, as_of = conn.execute(select(b.c.status, b.c.as_of_date).where(b.c.id == batch_id)).one()
    return status, as_of
