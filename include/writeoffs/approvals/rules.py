"""The rules of an approval step: steps and decisions, who may answer, four eyes, the governing tiers."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Connection, select

from writeoffs.approvals.items import current_total
from writeoffs.db import dialect
from writeoffs.db.schema import approvals, writeoff_batches
from writeoffs.errors import ApprovalError, ConfigError, SegregationOfDuties
from writeoffs.identity import normalized as _norm
from writeoffs.tiers import Tier, tier_named

STEPS = ("approve", "confirm")
#: Decisions allowed per step.
DECISIONS: dict[str, tuple[str, ...]] = {
    "approve": ("approved", "rejected", "expired", "escalated"),
    # Escalation re-routes the *approval* to the next tier; a confirm timeout simply expires the batch.
    "confirm": ("confirmed", "rejected", "expired"),
}
#: Batch statuses in which a step may be decided.
OPEN_FOR: dict[str, tuple[str, ...]] = {
    "approve": ("proposed", "awaiting_approval"),
    "confirm": ("approved",),
}
#: Decisions that grant something: only these are subject to entitlement and limit checks. ``expired`` and
#: ``escalated`` are timeouts recorded by the system (the HITL DAG); they can only stop or re-route a batch.
GRANTING = ("approved", "confirmed")
HUMAN = ("approved", "confirmed", "rejected")


def _lock_batch(conn: Connection, batch_id: int):
    """The batch's row, locked until the transaction ends on PostgreSQL. Not ``db.locks.locked``: on SQLite its
    early writer lock would block the refusal audit, written in its own transaction while this one is still open
    (``record.audit_refusal``). On SQLite the second of two decisions that both read the batch open is refused by
    the unique key of ``approvals`` (one row per batch and step)."""
    q = select(writeoff_batches).where(writeoff_batches.c.id == batch_id)
    if dialect.of(conn).row_locks:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    return row


def _tier(batch, tiers: Sequence[Tier]) -> Tier:
    try:
        return tier_named(batch.tier, tiers)
    except ConfigError as exc:
        raise ApprovalError(f"batch {batch.id}: {exc}") from exc


def _entitlement_problems(user: str, batch, tier: Tier, role: str, step: str) -> list[str]:
    problems = []
    if _norm(user) == _norm(batch.prepared_by):
        problems.append(f"{role} {user!r} prepared batch {batch.id}: nobody may approve their own batch")
    if batch.routed_by is not None and _norm(user) == _norm(batch.routed_by):
        problems.append(
            f"{role} {user!r} triggered the approval run that routed batch {batch.id}: they may not answer it"
        )
    entitled = tier.answerers(step)
    if _norm(user) not in {_norm(a) for a in entitled}:
        kind = "an approver" if step == "approve" else "a confirmer"
        problems.append(f"{role} {user!r} is not {kind} of tier {tier.name!r} ({', '.join(entitled)})")
    return problems


def _four_eyes_problem(tier: Tier, currency: str, total: Decimal | None, approver: str, confirmer: str) -> str | None:
    """The confirm step of a batch above the tier's four-eyes amount by the person who approved it: refused."""
    if _norm(approver) != _norm(confirmer) or not tier.four_eyes(currency, total):
        return None
    above = tier.four_eyes_above.get(currency)
    amount = "at any amount" if above is None else f"above {above:,.2f} {currency}"
    return (
        f"four eyes: {confirmer!r} approved this batch and may not also confirm it (tier {tier.name!r} requires a "
        f"second person {amount}; confirmers: {', '.join(tier.answerers('confirm'))})"
    )


def _confirmers_left(tier: Tier, batch, approver: str, total: Decimal | None) -> tuple[str, ...]:
    """Who could confirm the batch once ``approver`` approved it at ``total``: the tier's confirmers minus its
    preparer and whoever routed it, and under four eyes minus the approver."""
    barred = {_norm(batch.prepared_by), _norm(batch.routed_by)}
    if tier.four_eyes(batch.currency, total):
        barred.add(_norm(approver))
    return tuple(p for p in tier.answerers("confirm") if _norm(p) not in barred)


def no_confirmer_problem(tier: Tier, batch, approver: str, total: Decimal | None) -> str | None:
    """Why an approval by ``approver`` may not be given: nobody could confirm the batch after it (it would stay
    "approved" until it expired) - or None."""
    if _confirmers_left(tier, batch, approver, total):
        return None
    return (
        f"nobody could then confirm batch {batch.id} if {approver!r} approved it: the confirmers of tier "
        f"{tier.name!r} ({', '.join(tier.answerers('confirm'))}) prepared or routed it, or are that approver under "
        "four eyes; add another confirmer to the tier"
    )


def eligible_answerers(conn: Connection, batch_id: int, step: str, tiers: Sequence[Tier]) -> tuple[str, ...]:
    """Who may answer ``step`` of the batch now: the tier's answerers for the step, minus its preparer and the
    person who routed it, and for the confirm step under four eyes minus its approver; for the approve step only
    those after whose approval someone could still confirm (:func:`no_confirmer_problem`). The approval UI asks
    exactly these people; :func:`record_decision` refuses anyone else whatever the UI did. Empty: nobody may
    (refused)."""
    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
    if batch is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    tier = _tier(batch, tiers)
    barred = {_norm(batch.prepared_by), _norm(batch.routed_by)}
    if step == "confirm":
        approved_by = conn.execute(
            select(approvals.c.approver).where(approvals.c.batch_id == batch_id, approvals.c.step == "approve")
        ).scalar()
        if approved_by is not None and tier.four_eyes(batch.currency, current_total(conn, batch_id)):
            barred.add(_norm(approved_by))
    people = tuple(p for p in tier.answerers(step) if _norm(p) not in barred)
    if not people:
        raise SegregationOfDuties(
            f"batch {batch_id}: nobody may answer the {step} step of tier {tier.name!r}: its "
            f"{'approvers' if step == 'approve' else 'confirmers'} ({', '.join(tier.answerers(step))}) prepared, "
            "routed or approved the batch; add another person to the tier"
        )
    if step == "approve":
        total = current_total(conn, batch_id)
        completing = tuple(p for p in people if no_confirmer_problem(tier, batch, p, total) is None)
        if not completing:
            raise SegregationOfDuties(f"batch {batch_id}: {no_confirmer_problem(tier, batch, people[0], total)}")
        people = completing
    return people


def governing_tiers(conn: Connection, batch_id: int) -> tuple[Tier, ...]:
    """The tiers (``auto`` first) of the policy version the batch was selected under: what governs its approval,
    escalation and posting, whatever the policy file says today. Refused if that version is not recorded or its
    recorded text no longer matches its hash."""
    from writeoffs.accounting.chart import batch_policy

    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
    if batch is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    try:
        return batch_policy(conn, batch).all_tiers
    except ConfigError as exc:
        raise ApprovalError(f"batch {batch_id}: {exc}") from exc
