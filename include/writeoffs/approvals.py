"""Approval records for write-off batches: segregation of duties enforced server-side, re-verified at posting.

The approvals UI (a human-in-the-loop DAG) only *collects* decisions; this module decides whether a decision may
be recorded, and :func:`verify_batch_approval` re-checks everything again when the batch is posted, so that a
batch whose status was flipped by raw SQL, or whose items changed after approval, is never posted.

Two steps per batch (the billing system's "review, then finalise"): ``approve`` (decision approved | rejected |
expired | escalated) then ``confirm`` (confirmed | rejected | expired). The approve step is answered by one of the
tier's approvers, the confirm step by one of its confirmers (:meth:`Tier.answerers`); never by the batch's preparer
nor by whoever triggered the approval run that routed it (``routed_by``). Four eyes: above the tier's
``four_eyes_above`` amount (every amount for a currency it does not list) the confirmer must be a different person
than the approver; below it, the same person may finalise their own review. Limits: the tier's item and batch
limits and every narrower limit for a reason, segment or the deciding user (:meth:`Tier.problem_for`, most
restrictive wins). ``escalated`` (approve step only) writes no row: it moves the batch to the next tier, whose
approver then records the approve step. One ``approvals`` row per (batch, step).

Batch hash: ``sha256`` over the sorted lines ``invoice_ref \\x1f amount \\x1f reason_code`` (amount at the
ledger's scale of 4 decimals, e.g. ``45000.0000``), lines joined with ``\\n``; see :func:`batch_hash_of`. The policy
computes it over all items at proposal (``writeoff_batches.batch_hash``); each approval row stores the hash over the
items that remain after that step's exclusions; posting recomputes it from the items that are not ``excluded``.

Refused attempts: the decision is not recorded, but the attempt is audited in a *separate* transaction on a
separate connection, committed before the error is raised. The caller's transaction is usually rolled back by the
exception; an auditor must still see that someone tried to approve their own batch. Consequence for callers: call
:func:`record_decision` in a transaction of its own (``with engine.begin() as conn``) that has not written yet,
otherwise on SQLite the audit connection waits for the caller's write lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, literal, select, update
from sqlalchemy.exc import IntegrityError

from writeoffs import audit
from writeoffs.db.schema import approvals, audit_log, customers, invoices, writeoff_batches, writeoffs
from writeoffs.errors import AnswerNotTaken, ApprovalError, ConfigError, SegregationOfDuties
from writeoffs.identity import normalized as _norm
from writeoffs.tiers import AUTO_TIER, SYSTEM_ACTOR, Item, Tier, next_tier, tier_named

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
_SCALE = Decimal("0.0001")


def _amount_text(amount: object) -> str:
    return format(Decimal(str(amount)).quantize(_SCALE), "f")


def batch_hash_of(items: Iterable[tuple[str, object, str]]) -> str:
    """The batch hash over ``(invoice_ref, amount, reason_code)`` items (order-independent).

    One definition for the whole pipeline: the policy computes it when proposing a batch (set-wise on PostgreSQL),
    approval and posting recompute it here; a second formula would refuse every approval.
    """
    from writeoffs.policy.batching import items_digest

    return items_digest(
        (ref, amount if type(amount) is Decimal else Decimal(str(amount)), reason) for ref, amount, reason in items
    )


def current_item_rows(conn: Connection, batch_id: int, *, segments: bool = True):
    """The batch's items that are not excluded: id, invoice_id, invoice_ref, amount, reason_code, status, segment.
    ``segments=False`` leaves the customer segment empty (no join) when no limit looks at it."""
    joined = writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id)
    if segments:
        joined = joined.join(customers, customers.c.id == invoices.c.customer_id)
    segment = customers.c.segment if segments else literal("").label("segment")
    return conn.execute(
        select(
            writeoffs.c.id,
            writeoffs.c.invoice_id,
            invoices.c.invoice_ref,
            writeoffs.c.amount,
            writeoffs.c.reason_code,
            writeoffs.c.status,
            segment,
        )
        .select_from(joined)
        .where(writeoffs.c.batch_id == batch_id, writeoffs.c.status != "excluded")
    ).all()


def limit_items(rows) -> list[Item]:
    """What the limit rules look at, from :func:`current_item_rows` rows: (amount, reason, segment) per item."""
    return [(r.amount, r.reason_code, r.segment) for r in rows]


def current_items(conn: Connection, batch_id: int) -> list[tuple[str, Decimal, str]]:
    """The batch's items that are not excluded, as (invoice_ref, amount, reason_code)."""
    return [(r.invoice_ref, r.amount, r.reason_code) for r in current_item_rows(conn, batch_id)]


def _lock_batch(conn: Connection, batch_id: int):
    q = select(writeoff_batches).where(writeoff_batches.c.id == batch_id)
    if conn.dialect.name == "postgresql":
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


def eligible_answerers(conn: Connection, batch_id: int, step: str, tiers: Sequence[Tier]) -> tuple[str, ...]:
    """Who may answer ``step`` of the batch now: the tier's answerers for the step, minus its preparer and the
    person who routed it, and for the confirm step under four eyes minus its approver. The approval UI asks exactly
    these people; :func:`record_decision` refuses anyone else whatever the UI did. Empty: nobody may (refused)."""
    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
    if batch is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    tier = _tier(batch, tiers)
    barred = {_norm(batch.prepared_by), _norm(batch.routed_by)}
    if step == "confirm":
        approved_by = conn.execute(
            select(approvals.c.approver).where(approvals.c.batch_id == batch_id, approvals.c.step == "approve")
        ).scalar()
        if approved_by is not None and tier.four_eyes(batch.currency, _total(current_items(conn, batch_id))):
            barred.add(_norm(approved_by))
    people = tuple(p for p in tier.answerers(step) if _norm(p) not in barred)
    if not people:
        raise SegregationOfDuties(
            f"batch {batch_id}: nobody may answer the {step} step of tier {tier.name!r}: its "
            f"{'approvers' if step == 'approve' else 'confirmers'} ({', '.join(tier.answerers(step))}) prepared, "
            "routed or approved the batch; add another person to the tier"
        )
    return people


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
    batch = _lock_batch(conn, batch_id)

    existing = conn.execute(select(approvals).where(approvals.c.batch_id == batch_id, approvals.c.step == step)).first()
    if existing is not None:
        if _norm(existing.approver) == _norm(approver) and existing.decision == decision:
            return  # idempotent replay of the same decision (e.g. a retried task): nothing to add
        raise ApprovalError(
            f"batch {batch_id} step {step!r} was already decided: {existing.decision} by {existing.approver} "
            f"at {existing.decided_at}"
        )
    if batch.status not in OPEN_FOR[step]:
        raise ApprovalError(
            f"batch {batch_id} is {batch.status!r}; step {step!r} needs status {' or '.join(OPEN_FOR[step])}"
        )
    if batch.tier == AUTO_TIER:
        raise ApprovalError(f"batch {batch_id} is in the auto tier (small-balance tolerance): no human decision")
    tier = _tier(batch, tiers)

    if decision in HUMAN:
        problems = _entitlement_problems(approver, batch, tier, "approver" if step == "approve" else "confirmer", step)
        if problems:
            raise SegregationOfDuties("; ".join(problems))

    items = current_item_rows(conn, batch_id)
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

    remaining = [r for r in items if r.invoice_ref not in set(excluded)]
    max_item = max((r.amount for r in remaining), default=None)
    total = sum((r.amount for r in remaining), Decimal(0)) if remaining else None
    if decision in GRANTING:
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
            if problem:
                raise SegregationOfDuties(f"batch {batch_id}: {problem}")
    if dry_run:
        return  # every check passed; nothing is written
    approved_hash = batch_hash_of((r.invoice_ref, r.amount, r.reason_code) for r in remaining)

    details = {
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

    if decision == "escalated":
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
        return

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
            return
        raise ApprovalError(f"batch {batch_id} step {step!r} was decided concurrently by someone else") from exc

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


@dataclass(frozen=True, slots=True)
class ApprovalSummary:
    batch_id: int
    tier: str
    auto: bool
    approver: str | None
    confirmer: str | None
    approve_id: int | None
    confirm_id: int | None
    limit_amount: Decimal | None
    max_item: Decimal | None
    item_count: int
    batch_hash: str
    policy_version: str
    #: The verified items still to post (status ``approved``): id -> (invoice_id, amount, reason_code). Posting
    #: holds every chunk to exactly these.
    to_post: dict[int, tuple[int, Decimal, str]] = field(default_factory=dict)


def _total(items) -> Decimal | None:
    """The sum of a batch's (ref, amount, reason) items; None when there are none."""
    return sum((a for _, a, _ in items), Decimal(0)) if items else None


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


def _audited(conn: Connection, batch_id: int) -> dict[str, dict]:
    """The audit log's record of granting decisions on a batch (the hash-chained witness of the approvals rows)."""
    rows = conn.execute(
        select(audit_log.c.action, audit_log.c.actor, audit_log.c.details).where(
            audit_log.c.object_type == "writeoff_batch",
            audit_log.c.object_id == str(batch_id),
            audit_log.c.action.in_(("approval.approved", "approval.confirmed")),
        )
    ).all()
    return {r.action.split(".", 1)[1]: {"actor": r.actor, **json.loads(r.details)} for r in rows}


def verify_batch_approval(conn: Connection, batch_id: int, tiers: Sequence[Tier]) -> ApprovalSummary:
    """Re-check, at posting time, that a batch is validly approved; raise ApprovalError listing every problem."""
    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
    if batch is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    # One read of the items gives the digest's lines and the items posting will be held to (tuples unpacked, not
    # attribute lookups on 50,000 rows).
    items: list[tuple[str, Decimal, str]] = []
    limited: list[Item] = []
    to_post: dict[int, tuple[int, Decimal, str]] = {}
    # Segments only when the batch's tier has a segment restriction (posting's hot path: 50,000 rows).
    by_segment = any(r.kind == "segment" for t in tiers if t.name == batch.tier for r in t.restrictions)
    for wid, invoice_id, ref, amount, reason, status, segment in current_item_rows(conn, batch_id, segments=by_segment):
        items.append((ref, amount, reason))
        limited.append((amount, reason, segment))
        if status == "approved":
            to_post[wid] = (invoice_id, amount, reason)
    max_item = max((a for _, a, _ in items), default=None)
    digest = batch_hash_of(items)
    problems: list[str] = []
    if batch.status != "confirmed":
        problems.append(f"status is {batch.status!r}, not 'confirmed'")
    if not items:
        problems.append("the batch has no items to post")

    if batch.tier == AUTO_TIER:
        problems += _auto_problems(batch, tiers, max_item, _total(items))
        if batch.batch_hash is not None and batch.batch_hash != digest:
            problems.append(f"items changed since proposal (hash {digest[:12]} != {batch.batch_hash[:12]})")
        if problems:
            raise ApprovalError(f"batch {batch_id} may not be posted: " + "; ".join(problems))
        return ApprovalSummary(
            batch_id,
            AUTO_TIER,
            True,
            None,
            None,
            None,
            None,
            _auto_tier(tiers).limit_for(batch.currency),
            max_item,
            len(items),
            digest,  # type: ignore[union-attr]
            batch.policy_version,
            to_post,
        )

    rows = {r.step: r for r in conn.execute(select(approvals).where(approvals.c.batch_id == batch_id)).all()}
    try:
        tier = tier_named(batch.tier, tiers)
    except ConfigError as exc:
        raise ApprovalError(f"batch {batch_id} may not be posted: {exc}") from exc
    witnessed = _audited(conn, batch_id)
    # The tier's own limits bind whoever decided; the narrower ones (reason, segment, user) per decision below.
    base = tier.problem(batch.currency, max_item, _total(items))
    if base:
        problems.append(base)
    for step, wanted in (("approve", "approved"), ("confirm", "confirmed")):
        row = rows.get(step)
        if row is None:
            problems.append(f"no {step!r} decision recorded")
            continue
        if row.decision != wanted:
            problems.append(f"{step!r} decision is {row.decision!r}, not {wanted!r}")
        if row.tier != batch.tier:
            problems.append(f"{step!r} was decided for tier {row.tier!r}, the batch is tier {batch.tier!r}")
        problems += _entitlement_problems(row.approver, batch, tier, f"{step} decision by", step)
        if row.decision == wanted and base is None:
            limit = tier.problem_for(batch.currency, limited, user=row.approver)
            if limit is not None:
                problems.append(f"{step} decision by {row.approver!r}: {limit}")
        seen = witnessed.get(wanted)
        if seen is None or _norm(seen["actor"]) != _norm(row.approver) or seen.get("batch_hash") != row.batch_hash:
            problems.append(f"{step!r} decision has no matching record in the audit log (recorded outside the app?)")
    confirm = rows.get("confirm")
    if confirm is not None and "approve" in rows:
        problem = _four_eyes_problem(tier, batch.currency, _total(items), rows["approve"].approver, confirm.approver)
        if problem:
            problems.append(problem)
    if confirm is not None and confirm.batch_hash != digest:
        problems.append(f"items changed since approval (hash {digest[:12]} != {confirm.batch_hash[:12]})")
    if problems:
        raise ApprovalError(f"batch {batch_id} may not be posted: " + "; ".join(problems))
    approve = rows["approve"]
    return ApprovalSummary(
        batch_id=batch_id,
        tier=tier.name,
        auto=False,
        approver=approve.approver,
        confirmer=confirm.approver,  # type: ignore[union-attr]
        approve_id=approve.id,
        confirm_id=confirm.id,  # type: ignore[union-attr]
        limit_amount=tier.limit_for(batch.currency),
        max_item=max_item,
        item_count=len(items),
        batch_hash=digest,
        policy_version=batch.policy_version,
        to_post=to_post,
    )
