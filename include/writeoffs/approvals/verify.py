"""Posting-time re-verification of a batch's approval (:func:`verify_batch_approval`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Connection, select

from writeoffs.approvals.auto import _auto_problems, _auto_tier
from writeoffs.approvals.items import _total, batch_hash_of, current_item_rows
from writeoffs.approvals.rules import _entitlement_problems, _four_eyes_problem
from writeoffs.db.schema import approvals, audit_log, writeoff_batches
from writeoffs.errors import ApprovalError, ConfigError
from writeoffs.identity import normalized as _norm
from writeoffs.tiers import AUTO_TIER, Item, Tier, tier_named


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
    items, limited, to_post = _posting_items(conn, batch, batch_id, tiers)
    max_item = max((a for _, a, _ in items), default=None)
    digest = batch_hash_of(items)
    problems: list[str] = []
    if batch.status != "confirmed":
        problems.append(f"status is {batch.status!r}, not 'confirmed'")
    if not items:
        problems.append("the batch has no items to post")

    if batch.tier == AUTO_TIER:
        return _verify_auto(batch, batch_id, tiers, items, max_item, digest, to_post, problems)

    rows = {r.step: r for r in conn.execute(select(approvals).where(approvals.c.batch_id == batch_id)).all()}
    try:
        tier = tier_named(batch.tier, tiers)
    except ConfigError as exc:
        raise ApprovalError(f"batch {batch_id} may not be posted: {exc}") from exc
    problems += _decision_problems(conn, batch, batch_id, tier, rows, items, limited, max_item, digest)
    if problems:
        raise ApprovalError(f"batch {batch_id} may not be posted: " + "; ".join(problems))
    approve = rows["approve"]
    confirm = rows.get("confirm")
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


def _posting_items(
    conn: Connection, batch, batch_id: int, tiers: Sequence[Tier]
) -> tuple[list[tuple[str, Decimal, str]], list[Item], dict[int, tuple[int, Decimal, str]]]:
    """The batch's items that are not excluded: the digest's lines, what the limits look at, and the items to post."""
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
    return items, limited, to_post


def _verify_auto(
    batch,
    batch_id: int,
    tiers: Sequence[Tier],
    items: list[tuple[str, Decimal, str]],
    max_item: Decimal | None,
    digest: str,
    to_post: dict[int, tuple[int, Decimal, str]],
    problems: list[str],
) -> ApprovalSummary:
    """The auto-tier batch's summary, if it is within the small-balance tolerance and unchanged since proposal."""
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


def _decision_problems(
    conn: Connection,
    batch,
    batch_id: int,
    tier: Tier,
    rows: dict,
    items: list[tuple[str, Decimal, str]],
    limited: list[Item],
    max_item: Decimal | None,
    digest: str,
) -> list[str]:
    """What is wrong with the recorded approve and confirm decisions of a human-tier batch (empty: nothing)."""
    problems: list[str] = []
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
    return problems
