"""Auto-approval of batches in the auto tier (small-balance tolerance): no human decision."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Connection, update

from writeoffs import audit
from writeoffs.approvals.items import _total, batch_hash_of, current_items
from writeoffs.approvals.rules import OPEN_FOR, _lock_batch
from writeoffs.db.schema import writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError
from writeoffs.tiers import AUTO_TIER, Tier


def _auto_tier(tiers: Sequence[Tier]) -> Tier | None:
    return next((t for t in tiers if t.name == AUTO_TIER), None)


def _auto_problems(batch, tiers: Sequence[Tier], max_item: Decimal | None, total: Decimal | None) -> list[str]:
    # The tolerance must be explicit: without it, a batch whose tier was set to 'auto' by raw SQL would post
    # any amount without a human ever looking at it.
    auto = _auto_tier(tiers)
    if auto is None or auto.limit_for(batch.currency) is None:
        return [f"no small-balance tolerance configured for {batch.currency} (tier {AUTO_TIER!r} with a limit)"]
    problem = auto.problem(batch.currency, max_item, total)
    return [problem] if problem else []


def auto_approve(conn: Connection, batch_id: int, tiers: Sequence[Tier], *, actor: str) -> bool:
    """Move an auto-tier batch to ``confirmed`` (no human approval) and audit it; False if nothing to do."""
    batch = _lock_batch(conn, batch_id)
    if batch.tier != AUTO_TIER or batch.status not in OPEN_FOR["approve"]:
        return False
    items = current_items(conn, batch_id)
    max_item = max((a for _, a, _ in items), default=None)
    problems = _auto_problems(batch, tiers, max_item, _total(items))
    digest = batch_hash_of(items)
    if batch.batch_hash is not None and batch.batch_hash != digest:
        problems.append(f"items changed since proposal (hash {digest[:12]} != {batch.batch_hash[:12]})")
    if not items:
        problems.append("the batch has no items")
    if problems:
        raise ApprovalError(f"auto batch {batch_id} cannot be auto-approved: " + "; ".join(problems))
    conn.execute(
        update(writeoffs)
        .where(writeoffs.c.batch_id == batch_id, writeoffs.c.status == "candidate")
        .values(status="approved")
    )
    conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == batch_id).values(status="confirmed"))
    audit.append(
        conn,
        actor=actor,
        action="approval.auto",
        object_type="writeoff_batch",
        object_id=batch_id,
        details={
            "message": "auto-approved under small-balance tolerance",
            "tolerance": _auto_tier(tiers).limit_for(batch.currency),  # type: ignore[union-attr]
            "max_item": max_item,
            "item_count": len(items),
            "batch_hash": digest,
            "policy_version": batch.policy_version,
        },
    )
    return True
