"""Recording one step's decision on a batch, or refusing it (and auditing the refusal on a side transaction)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from writeoffs import audit
from writeoffs.approvals.items import batch_hash_of, current_item_rows, limit_items
from writeoffs.approvals.rules import (
    DECISIONS,
    GRANTING,
    HUMAN,
    OPEN_FOR,
    STEPS,
    _entitlement_problems,
    _four_eyes_problem,
    _lock_batch,
    _tier,
    no_confirmer_problem,
)
from writeoffs.db.schema import approvals, invoices, writeoff_batches, writeoffs
from writeoffs.errors import AnswerNotTaken, ApprovalError, SegregationOfDuties
from writeoffs.identity import normalized as _norm
from writeoffs.tiers import AUTO_TIER, SYSTEM_ACTOR, Tier, next_tier


def record_decision(
    conn: Connection,
    *,
    batch_id: int,
    step: str,
    approver: str,
    decision: str,
    tiers: Sequence[Tier],
    comment: str | None = None,
    excluded_invoice_refs: Sequence[str] = (),
    now: datetime | None = None,
    dry_run: bool = False,
) -> None:
    """Record one step's decision on a batch, or refuse it (and audit the refused attempt separately).

    ``dry_run``: run every check and audit a refusal exactly as a real answer would be, but record nothing else
    (the api-server's answer gate asks this before Airflow accepts an answer; the task records it afterwards)."""
    now = now or datetime.now(UTC)
    try:
        _record(conn, batch_id, step, approver, decision, tiers, comment, tuple(excluded_invoice_refs), now, dry_run)
    except ApprovalError as exc:
        audit_refusal(conn.engine, batch_id, step, approver, decision, comment, excluded_invoice_refs, str(exc), now)
        raise


def audit_refusal(
    engine: Engine,
    batch_id: int,
    step: str,
    approver: str,
    decision: str,
    comment: str | None,
    excluded: Sequence[str],
    reason: str,
    now: datetime | None = None,
) -> None:
    """Audit a refused answer (``approval.refused``) on a connection and transaction of its own: committed even
    though the caller's transaction rolls back. :func:`record_decision` calls it for its refusals; the approval glue
    for answers refused before they reach it (a form field of the wrong shape)."""
    with engine.begin() as side:
        audit.append(
            side,
            actor=approver or "unknown",
            action="approval.refused",
            object_type="writeoff_batch",
            object_id=batch_id,
            details={
                "step": step,
                "decision": decision,
                "comment": comment,
                "excluded_invoice_refs": list(excluded),
                "reason": reason,
            },
            now=now,
        )


def _record(
    conn: Connection,
    batch_id: int,
    step: str,
    approver: str,
    decision: str,
    tiers: Sequence[Tier],
    comment: str | None,
    excluded: tuple[str, ...],
    now: datetime,
    dry_run: bool = False,
) -> None:
    _check_answer_form(step, decision, approver)
    batch = _lock_batch(conn, batch_id)
    if _already_decided(conn, batch_id, step, approver, decision):
        return  # idempotent replay of the same decision (e.g. a retried task): nothing to add
    tier = _open_tier(batch, batch_id, step, tiers)

    if decision in HUMAN:
        problems = _entitlement_problems(approver, batch, tier, "approver" if step == "approve" else "confirmer", step)
        if problems:
            raise SegregationOfDuties("; ".join(problems))

    items = current_item_rows(conn, batch_id)
    _check_items(conn, batch, batch_id, step, items, excluded)

    remaining = [r for r in items if r.invoice_ref not in set(excluded)]
    max_item = max((r.amount for r in remaining), default=None)
    total = sum((r.amount for r in remaining), Decimal(0)) if remaining else None
    if decision in GRANTING:
        _check_grant(conn, batch, batch_id, tier, step, approver, remaining, total)
    if dry_run:
        return  # every check passed; nothing is written
    approved_hash = batch_hash_of((r.invoice_ref, r.amount, r.reason_code) for r in remaining)
    details = _details(batch, tier, step, decision, comment, excluded, approved_hash, max_item, total)

    if decision == "escalated":
        _escalate(conn, batch_id, tier, tiers, approver, details, now)
        return
    inserted = _insert_approval(
        conn, batch, batch_id, step, tier, approver, decision, comment, excluded, approved_hash, now
    )
    if not inserted:
        return  # a concurrent replay of the same decision recorded it
    _apply_decision(conn, batch, batch_id, approver, decision, excluded, details, now)


def _check_answer_form(step: str, decision: str, approver: str) -> None:
    """The answer names a known step, a decision valid for it, and an approver who may give that kind of decision."""
    if step not in STEPS:
        raise ApprovalError(f"unknown approval step {step!r}; expected one of {STEPS}")
    if decision not in DECISIONS[step]:
        raise ApprovalError(f"decision {decision!r} is not valid for step {step!r}; expected {DECISIONS[step]}")
    if not (approver or "").strip():
        raise ApprovalError("a decision needs a named approver")
    # Timeouts and escalations are the machinery's, decisions are people's: neither may pose as the other.
    if decision not in HUMAN and _norm(approver) != _norm(SYSTEM_ACTOR):
        raise SegregationOfDuties(
            f"{decision!r} can only be recorded by the approval system ({SYSTEM_ACTOR}), not by {approver!r}"
        )
    if decision in HUMAN and _norm(approver) == _norm(SYSTEM_ACTOR):
        raise SegregationOfDuties(f"the approval system cannot record a person's decision ({decision!r})")


def _already_decided(conn: Connection, batch_id: int, step: str, approver: str, decision: str) -> bool:
    """True if this very decision is already recorded (a replay); refused if the step was decided otherwise."""
    existing = conn.execute(select(approvals).where(approvals.c.batch_id == batch_id, approvals.c.step == step)).first()
    if existing is None:
        return False
    if _norm(existing.approver) == _norm(approver) and existing.decision == decision:
        return True
    raise ApprovalError(
        f"batch {batch_id} step {step!r} was already decided: {existing.decision} by {existing.approver} "
        f"at {existing.decided_at}"
    )


def _open_tier(batch, batch_id: int, step: str, tiers: Sequence[Tier]) -> Tier:
    """The batch's tier, if the batch is open for ``step`` and needs a human decision; refused otherwise."""
    if batch.status not in OPEN_FOR[step]:
        raise ApprovalError(
            f"batch {batch_id} is {batch.status!r}; step {step!r} needs status {' or '.join(OPEN_FOR[step])}"
        )
    if batch.tier == AUTO_TIER:
        raise ApprovalError(f"batch {batch_id} is in the auto tier (small-balance tolerance): no human decision")
    return _tier(batch, tiers)


def _check_items(conn: Connection, batch, batch_id: int, step: str, items, excluded: tuple[str, ...]) -> None:
    """The excluded invoices are items of the batch, and the items are those the previous step saw."""
    refs = {r.invoice_ref for r in items}
    unknown = sorted(set(excluded) - refs)
    if unknown:
        raise AnswerNotTaken(f"excluded invoices {unknown[:10]} are not (remaining) items of batch {batch_id}")

    # The approver must decide on what was shown: the items may not have changed since the previous step.
    shown = batch_hash_of((r.invoice_ref, r.amount, r.reason_code) for r in items)
    if step == "approve":
        expected = batch.batch_hash
        since = "proposal"
    else:
        expected = conn.execute(
            select(approvals.c.batch_hash).where(approvals.c.batch_id == batch_id, approvals.c.step == "approve")
        ).scalar()
        since = "approval"
    if expected is not None and expected != shown:
        raise ApprovalError(f"batch {batch_id} items changed since {since} (hash {shown[:12]} != {expected[:12]})")


def _check_grant(
    conn: Connection,
    batch,
    batch_id: int,
    tier: Tier,
    step: str,
    approver: str,
    remaining,
    total: Decimal | None,
) -> None:
    """A granting decision: something remains, within the approver's limits, and four eyes on the confirm step."""
    if not remaining:
        raise AnswerNotTaken(f"batch {batch_id}: every item is excluded; reject the batch instead")
    problem = tier.problem_for(batch.currency, limit_items(remaining), user=approver)
    if problem:
        # A limit the remaining items exceed can be cured (exclude items, or another person's higher limit); a
        # currency the tier sets no limit for cannot, by any answer.
        refusal = AnswerNotTaken if tier.sets_limits(batch.currency) else ApprovalError
        raise refusal(f"batch {batch_id}: {problem}")
    if step == "confirm":
        approved_by = conn.execute(
            select(approvals.c.approver).where(approvals.c.batch_id == batch_id, approvals.c.step == "approve")
        ).scalar()
        problem = _four_eyes_problem(tier, batch.currency, total, approved_by or "", approver)
    else:
        problem = no_confirmer_problem(tier, batch, approver, total)
    if problem:
        raise SegregationOfDuties(f"batch {batch_id}: {problem}")


def _details(
    batch,
    tier: Tier,
    step: str,
    decision: str,
    comment: str | None,
    excluded: tuple[str, ...],
    approved_hash: str,
    max_item: Decimal | None,
    total: Decimal | None,
) -> dict:
    """The audit record's details of a decision."""
    return {
        "step": step,
        "decision": decision,
        "tier": tier.name,
        "comment": comment,
        "excluded_invoice_refs": sorted(excluded),
        "policy_version": batch.policy_version,
        "batch_hash": approved_hash,
        "limit_amount": tier.limit_for(batch.currency),
        "batch_limit": tier.batch_limit_for(batch.currency),
        "max_item": max_item,
        "total": total,
        "prepared_by": batch.prepared_by,
        "routed_by": batch.routed_by,
        "four_eyes": tier.four_eyes(batch.currency, total),
    }


def _escalate(
    conn: Connection, batch_id: int, tier: Tier, tiers: Sequence[Tier], approver: str, details: dict, now: datetime
) -> None:
    # Escalation re-routes the batch to the next tier; the approve/confirm row is left free for that tier.
    higher = next_tier(tier.name, [t for t in tiers if t.name != AUTO_TIER])
    if higher is None:
        raise ApprovalError(f"batch {batch_id}: tier {tier.name!r} is the top tier; nothing to escalate to")
    conn.execute(
        update(writeoff_batches)
        .where(writeoff_batches.c.id == batch_id)
        .values(tier=higher.name, status="awaiting_approval")
    )
    details["escalated_to"] = higher.name
    audit.append(
        conn,
        actor=approver,
        action="approval.escalated",
        object_type="writeoff_batch",
        object_id=batch_id,
        details=details,
        now=now,
    )


def _insert_approval(
    conn: Connection,
    batch,
    batch_id: int,
    step: str,
    tier: Tier,
    approver: str,
    decision: str,
    comment: str | None,
    excluded: tuple[str, ...],
    approved_hash: str,
    now: datetime,
) -> bool:
    """Insert the step's ``approvals`` row; False if a concurrent replay of the same decision inserted it first."""
    try:
        with conn.begin_nested():
            conn.execute(
                approvals.insert().values(
                    batch_id=batch_id,
                    step=step,
                    tier=tier.name,
                    approver=approver,
                    decision=decision,
                    comment=comment,
                    excluded_invoice_refs=json.dumps(sorted(excluded)),
                    limit_amount=tier.limit_for(batch.currency),
                    policy_version=batch.policy_version,
                    batch_hash=approved_hash,
                    decided_at=now,
                )
            )
    except IntegrityError as exc:
        # A concurrent decision won the race for (batch, step): same decision = replay, otherwise refused.
        other = conn.execute(
            select(approvals).where(approvals.c.batch_id == batch_id, approvals.c.step == step)
        ).first()
        if other is not None and _norm(other.approver) == _norm(approver) and other.decision == decision:
            return False
        raise ApprovalError(f"batch {batch_id} step {step!r} was decided concurrently by someone else") from exc
    return True


def _apply_decision(
    conn: Connection,
    batch,
    batch_id: int,
    approver: str,
    decision: str,
    excluded: tuple[str, ...],
    details: dict,
    now: datetime,
) -> None:
    """Apply a recorded decision: exclusions and item statuses, the batch's status, the audit record."""
    if excluded:
        conn.execute(
            update(writeoffs)
            .where(
                writeoffs.c.batch_id == batch_id,
                writeoffs.c.invoice_id.in_(
                    select(invoices.c.id).where(
                        invoices.c.entity_code == batch.entity_code, invoices.c.invoice_ref.in_(excluded)
                    )
                ),
            )
            .values(status="excluded")
        )
    item_status = {"approved": "approved", "rejected": "rejected", "expired": "expired"}.get(decision)
    if item_status:
        conn.execute(
            update(writeoffs)
            .where(writeoffs.c.batch_id == batch_id, writeoffs.c.status.in_(("candidate", "approved")))
            .values(status=item_status)
        )
    batch_status = {"approved": "approved", "confirmed": "confirmed", "rejected": "rejected", "expired": "expired"}
    conn.execute(
        update(writeoff_batches)
        .where(writeoff_batches.c.id == batch_id)
        .values(status=batch_status[decision], decided_at=now)
    )
    audit.append(
        conn,
        actor=approver,
        action=f"approval.{decision}",
        object_type="writeoff_batch",
        object_id=batch_id,
        details=details,
        now=now,
    )


def route_to_entitled_tier(engine: Engine, batch_id: int, tiers: Sequence[Tier]) -> str:
    """Escalate (as the system) a batch whose items exceed its tier's item or batch limit, one tier at a time, until
    a tier may approve it; return that tier. Nobody is asked to approve what they may not: a batch above every
    tier (e.g. a currency the policy sets no limit for) is refused here. Batches are moved up, never split."""
    human = [t for t in tiers if t.name != AUTO_TIER]
    while True:
        with engine.connect() as conn:
            batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
            if batch is None:
                raise ApprovalError(f"write-off batch {batch_id} does not exist")
            items = limit_items(current_item_rows(conn, batch_id))
        tier = _tier(batch, tiers)
        problem = tier.problem_for(batch.currency, items)
        if problem is None or batch.status not in OPEN_FOR["approve"]:
            return tier.name
        if next_tier(tier.name, human) is None:
            raise ApprovalError(f"batch {batch_id} cannot be approved by anyone: {problem}")
        with engine.begin() as conn:
            record_decision(
                conn,
                batch_id=batch_id,
                step="approve",
                approver=SYSTEM_ACTOR,
                decision="escalated",
                tiers=tiers,
                comment=problem,
            )
