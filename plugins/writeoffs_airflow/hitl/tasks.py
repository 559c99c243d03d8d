"""The plain task bodies of the approval DAG: the run's business date, claiming the batches to ask about, and
posting (confirmed batches, and auto-tier batches that need no human decision)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from writeoffs.tiers import SYSTEM_ACTOR  # a constant; the module imports nothing heavy
from writeoffs_airflow.hitl.config import _engine, batch_tiers

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def business_date_of(context: Any) -> str:
    """The run's business date as ISO text (the one rule: :func:`writeoffs_airflow.rundate.business_date`)."""
    from writeoffs_airflow.rundate import business_date

    return business_date(context).isoformat()


def claim_batches(as_of: str, *, run_id: str, routed_by: str = SYSTEM_ACTOR) -> list[int]:
    """Claim every proposed human-tier batch up to ``as_of`` for this run (status -> awaiting_approval).

    Up to, not only on: a batch of an earlier business date that no run claimed (the run of its day was still open,
    or failed) is claimed by the next run instead of staying ``proposed`` forever while its invoices are skipped as
    "in flight". Concurrent runs never share a batch: the claim is one conditional UPDATE, and each run then reads
    back what it holds. Idempotent: a retried task gets the batches it claimed before plus any newly proposed ones.
    """
    from datetime import date

    from sqlalchemy import select, update

    from writeoffs import audit
    from writeoffs.db.schema import writeoff_batches as b
    from writeoffs.tiers import AUTO_TIER

    day = date.fromisoformat(as_of)
    engine = _engine()
    with engine.begin() as conn:
        claimed = conn.execute(
            update(b)
            .where(b.c.as_of_date <= day, b.c.tier != AUTO_TIER, b.c.status == "proposed")
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
                details={"as_of": as_of, "batch_ids": ids, "routed_by": routed_by},
            )
    log.info("Routing %d batch(es) up to %s for approval: %s", len(ids), as_of, ids)
    return ids


def _posting_date(engine: Engine, batch_id: int):
    from sqlalchemy import select

    from writeoffs.db.schema import writeoff_batches

    with engine.connect() as conn:
        return conn.execute(select(writeoff_batches.c.as_of_date).where(writeoff_batches.c.id == batch_id)).scalar_one()


def _summary(result: object) -> dict[str, str]:
    # The posting result type belongs to writeoffs.posting; XCom gets strings only (money never as float).
    if isinstance(result, dict):
        return {str(k): str(v) for k, v in result.items()}
    fields = getattr(result, "__dataclass_fields__", None)
    if fields:
        return {k: str(getattr(result, k)) for k in fields}
    return {"result": str(result)}


def post_confirmed(batch_id: int) -> dict[str, str]:
    """Post one batch after its confirmation; ``post_batch`` re-checks the recorded approval and posts once."""
    from sqlalchemy import select

    from writeoffs.db.schema import writeoff_batches
    from writeoffs.posting import post_batch

    engine = _engine()
    with engine.connect() as conn:
        status = conn.execute(select(writeoff_batches.c.status).where(writeoff_batches.c.id == batch_id)).scalar_one()
    if status in ("rejected", "expired"):
        raise AirflowSkipException(f"batch {batch_id} is {status}: nothing to post")
    result = post_batch(
        engine,
        batch_id,
        actor=SYSTEM_ACTOR,
        tiers=batch_tiers(engine, batch_id),
        posting_date=_posting_date(engine, batch_id),
    )
    return {"batch_id": str(batch_id), **_summary(result)}


def post_auto(as_of: str) -> list[dict[str, str]]:
    """Auto-tier batches (under the small-balance tolerance): no human decision; ``post_batch`` auto-approves them
    under the policy's tolerance (refusing anything above it), posts and audits."""
    from datetime import date

    from sqlalchemy import select

    from writeoffs.db.schema import writeoff_batches as b
    from writeoffs.posting import post_batch
    from writeoffs.tiers import AUTO_TIER

    engine = _engine()
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                select(b.c.id).where(
                    b.c.as_of_date == date.fromisoformat(as_of),
                    b.c.tier == AUTO_TIER,
                    b.c.status.in_(("proposed", "awaiting_approval", "confirmed")),
                )
            ).scalars()
        )
    return [
        {
            "batch_id": str(batch_id),
            **_summary(
                post_batch(
                    engine,
                    batch_id,
                    actor=SYSTEM_ACTOR,
                    tiers=batch_tiers(engine, batch_id),
                    posting_date=_posting_date(engine, batch_id),
                )
            ),
        }
        for batch_id in ids
    ]
