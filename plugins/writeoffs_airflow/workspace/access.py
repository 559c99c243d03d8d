"""Who may see what in the workspace. The ledger decides; the identity comes from Airflow's authentication only.

- A batch that waits for a decision (``proposed``/``awaiting_approval``: the approve step; ``approved``: the confirm
  step) is visible to the people who may answer that step *now*: :func:`writeoffs.approvals.eligible_answerers`
  under the tiers of the policy the batch was selected under (its preparer, whoever routed it and, under four eyes,
  its approver are not among them). Everyone else: 403.
- A decided batch (posted, rejected, expired, ...) is visible to the answerers (approve and confirm) of its tier.
- Readers (``WRITEOFFS_WORKSPACE_READERS``, comma separated Airflow usernames: auditors, controllers who look but do
  not approve) see every batch and every page, and can never answer anything through the workspace.
- The invoice trail, reconciliation, sub-ledger and KPI pages: readers and the people of the tiers of the policy in
  force.

Fail closed: a batch whose recorded policy is missing or edited, or whose tier is unknown, is visible to readers
only. Names are compared in :func:`writeoffs.identity.normalized` form.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, func, select

from writeoffs.approval_view import NOT_POSTED_STATUSES
from writeoffs.db.schema import audit_log, writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError, ConfigError
from writeoffs.identity import normalized
from writeoffs.tiers import AUTO_TIER, Tier, tier_named

READERS_ENV = "WRITEOFFS_WORKSPACE_READERS"
#: Batch status -> the step that waits for an answer.
OPEN_STEPS: dict[str, str] = {"proposed": "approve", "awaiting_approval": "approve", "approved": "confirm"}


def readers(value: str | None = None) -> frozenset[str]:
    """The configured read-only users (normalised); empty when the variable is unset."""
    raw = os.environ.get(READERS_ENV, "") if value is None else value
    return frozenset(n for n in (normalized(p) for p in raw.split(",")) if n)


@dataclass(frozen=True, slots=True)
class QueueRow:
    batch_id: int
    entity_code: str
    currency: str
    tier: str
    step: str
    as_of_date: date
    status: str
    deadline: datetime | None
    count: int
    total: Decimal


class Access:
    """Per-request access decisions on one connection (the batch's policy is parsed once per policy hash)."""

    def __init__(self, conn: Connection, user: str, reader_names: frozenset[str] | None = None) -> None:
        self.conn = conn
        self.user = user
        self.me = normalized(user)
        self.is_reader = bool(self.me) and self.me in (readers() if reader_names is None else reader_names)
        self._policies: dict[str, tuple[Tier, ...] | None] = {}
        self._answerers: dict[tuple[int, str], tuple[str, ...]] = {}

    # -- policy of a batch
    def tiers_of(self, batch) -> tuple[Tier, ...] | None:
        from writeoffs.accounting.chart import batch_policy

        if batch.policy_hash not in self._policies:
            try:
                self._policies[batch.policy_hash] = batch_policy(self.conn, batch).all_tiers
            except ConfigError:
                self._policies[batch.policy_hash] = None  # unverifiable policy: nobody but readers
        return self._policies[batch.policy_hash]

    def answerers_now(self, batch) -> tuple[str, ...]:
        """Who may answer the batch's open step now (empty when it is not open or nobody may)."""
        from writeoffs.approvals import eligible_answerers

        step = OPEN_STEPS.get(batch.status)
        tiers = self.tiers_of(batch)
        if step is None or tiers is None or batch.tier == AUTO_TIER:
            return ()
        key = (batch.id, step)
        if key not in self._answerers:  # the confirm step reads the batch's items (four eyes): once per request
            try:
                self._answerers[key] = eligible_answerers(self.conn, batch.id, step, tiers)
            except (ApprovalError, ConfigError):
                self._answerers[key] = ()
        return self._answerers[key]

    def tier_people(self, batch) -> frozenset[str]:
        tiers = self.tiers_of(batch)
        if tiers is None:
            return frozenset()
        try:
            tier = tier_named(batch.tier, tiers)
        except ConfigError:
            return frozenset()
        return frozenset(normalized(p) for p in (*tier.answerers("approve"), *tier.answerers("confirm")))

    # -- decisions
    def may_view_batch(self, batch) -> bool:
        if not self.me:
            return False
        if self.is_reader:
            return True
        if batch.status in OPEN_STEPS:
            return self.me in {normalized(p) for p in self.answerers_now(batch)}
        return self.me in self.tier_people(batch)

    def may_read_reports(self) -> bool:
        """Trail, reconciliation, sub-ledger, KPIs: readers and the people of the policy in force."""
        if not self.me:
            return False
        return self.is_reader or self.me in policy_people(self.conn)

    def queue(self) -> list[QueueRow]:
        """The batches waiting for this user's answer, oldest business date first."""
        batches = self.conn.execute(
            select(writeoff_batches)
            .where(writeoff_batches.c.status.in_(tuple(OPEN_STEPS)), writeoff_batches.c.tier != AUTO_TIER)
            .order_by(writeoff_batches.c.as_of_date, writeoff_batches.c.id)
        ).all()
        mine = [b for b in batches if self.me and self.me in {normalized(p) for p in self.answerers_now(b)}]
        if not mine:
            return []
        ids = [b.id for b in mine]
        totals = {
            r.batch_id: (int(r.n), Decimal(r.total or 0))
            for r in self.conn.execute(
                select(writeoffs.c.batch_id, func.count().label("n"), func.sum(writeoffs.c.amount).label("total"))
                .where(writeoffs.c.batch_id.in_(ids), writeoffs.c.status.not_in(tuple(NOT_POSTED_STATUSES)))
                .group_by(writeoffs.c.batch_id)
            )
        }
        deadlines = request_deadlines(self.conn, ids)
        return [
            QueueRow(
                batch_id=b.id,
                entity_code=b.entity_code,
                currency=b.currency,
                tier=b.tier,
                step=OPEN_STEPS[b.status],
                as_of_date=b.as_of_date,
                status=b.status,
                deadline=deadlines.get((b.id, OPEN_STEPS[b.status])),
                count=totals.get(b.id, (0, Decimal(0)))[0],
                total=totals.get(b.id, (0, Decimal(0)))[1],
            )
            for b in mine
        ]

    def recent_batches(self, scan: int = 300, show: int = 100) -> list:
        """The newest batches (of the last ``scan``, auto tier included) this user may look at: everything for readers,
        for others the open batches they may answer and the decided batches of their tiers."""
        rows = self.conn.execute(select(writeoff_batches).order_by(writeoff_batches.c.id.desc()).limit(scan)).all()
        return [b for b in rows if self.may_view_batch(b)][:show]


def request_deadlines(conn: Connection, batch_ids: Sequence[int]) -> dict[tuple[int, str], datetime]:
    """The deadline of the latest request per (batch, step), from the audit log the approval operator writes."""
    actions = tuple(f"approval.requested.{s}" for s in ("approve", "confirm"))
    rows = conn.execute(
        select(audit_log.c.object_id, audit_log.c.action, audit_log.c.details)
        .where(
            audit_log.c.object_type == "writeoff_batch",
            audit_log.c.object_id.in_([str(i) for i in batch_ids]),
            audit_log.c.action.in_(actions),
        )
        .order_by(audit_log.c.id)
    ).all()
    out: dict[tuple[int, str], datetime] = {}
    for r in rows:
        try:
            deadline = datetime.fromisoformat(str(json.loads(r.details or "{}").get("deadline")))
        except (ValueError, TypeError, AttributeError):
            continue
        out[(int(r.object_id), r.action.rsplit(".", 1)[1])] = deadline  # later requests win
    return out


def policy_people(conn: Connection) -> frozenset[str]:
    """Approvers and confirmers of the policy in force (the ledger's active policy, else the policy file)."""
    from writeoffs.policy import load_policy
    from writeoffs.policy.registry import active_policy

    people: set[str] = set()
    for loader in (lambda: active_policy(conn), load_policy):
        try:
            policy = loader()
        except (ConfigError, OSError, ValueError):
            continue
        if policy is not None:
            for t in policy.tiers:
                people.update(normalized(p) for p in (*t.answerers("approve"), *t.answerers("confirm")))
    return frozenset(people)
