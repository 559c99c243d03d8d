"""The plain task bodies of the approval DAG: the run's business date, claiming the batches to ask about, and
posting (confirmed batches, and auto-tier batches that need no human decision)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from writeoffs.tiers import SYSTEM_ACTOR  # a constant; the module imports nothing heavy
from writeoffs_airflow.hitl.config import _engine, batch_tiers

if TYPE_CHECKING:
    from datetime import date

    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def business_date_of(context: Any) -> str:
    """The run's business date as ISO text (the one rule: :func:`writeoffs_airflow.rundate.business_date`)."""
    from writeoffs_airflow.rundate import business_date

    return business_date(context).isoformat()


def claim_batches(as_of: str, *, run_id: str, routed_by: str = SYSTEM_ACTOR) -> list[int]:
    """Claim the batches this run asks about (:func:`writeoffs.approvals.runs.claim_batches`: every proposed
    human-tier batch up to ``as_of``, idempotent, never shared between runs)."""
    from datetime import date

    from writeoffs.approvals.runs import claim_batches as claim

    with _engine().begin() as conn:
        ids = claim(conn, date.fromisoformat(as_of), run_id=run_id, routed_by=routed_by)
    log.info("Routing %d batch(es) up to %s for approval: %s", len(ids), as_of, ids)
    return ids


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
    from writeoffs.approvals.runs import batch_state

    engine = _engine()
    with engine.connect() as conn:
        status, day = batch_state(conn, batch_id)
    if status in ("rejected", "expired"):
        raise AirflowSkipException(f"batch {batch_id} is {status}: nothing to post")
    return {"batch_id": str(batch_id), **_post(engine, batch_id, day)}


def post_auto(as_of: str) -> list[dict[str, str]]:
    """Auto-tier batches (under the small-balance tolerance): no human decision; ``post_batch`` auto-approves them
    under the policy's tolerance (refusing anything above it), posts and audits."""
    from datetime import date

    from writeoffs.approvals.runs import auto_batches

    day = date.fromisoformat(as_of)
    engine = _engine()
    with engine.connect() as conn:
        ids = auto_batches(conn, day)  # batches of that business date: it is their posting date
    return [{"batch_id": str(batch_id), **_post(engine, batch_id, day)} for batch_id in ids]


def _post(engine: Engine, batch_id: int, day: date) -> dict[str, str]:
    """Post one batch on its business date under the tiers of its recorded policy."""
    from writeoffs.posting import post_batch

    tiers = batch_tiers(engine, batch_id)
    return _summary(post_batch(engine, batch_id, actor=SYSTEM_ACTOR, tiers=tiers, posting_date=day))
