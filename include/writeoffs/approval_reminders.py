"""Reminders before an approval request times out: which open requests are due one, read from the audit trail.

Every request the approval DAG opens is audited (``approval.requested.<step>``, with its deadline, the people it is
assigned to and where it lives in Airflow). A request is *due a reminder* when

- it is the batch's latest request for that step and the batch still waits for that step (approve: ``proposed`` or
  ``awaiting_approval``; confirm: ``approved``),
- its deadline is in the future but closer than the reminder window: a quarter of the tier's response time
  (:attr:`writeoffs.tiers.Tier.reminder_before`), and
- no reminder was audited for that request yet (``approval.reminded.<step>`` with the same deadline): one reminder
  per request, however often the reminder DAG runs.

Reading is per open request (one audit row each), not per invoice; the set is as small as the number of batches
waiting for people.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from writeoffs import audit
from writeoffs.db.schema import audit_log, writeoff_batches
from writeoffs.tiers import SYSTEM_ACTOR, Tier, tier_named

#: Batch statuses in which each step still waits for an answer.
WAITING = {"approve": ("proposed", "awaiting_approval"), "confirm": ("approved",)}
REQUESTED = "approval.requested."
REMINDED = "approval.reminded."


@dataclass(frozen=True, slots=True)
class Reminder:
    batch_id: int
    step: str
    tier: str
    deadline: datetime
    assigned_users: tuple[str, ...]
    dag_run_id: str | None
    task_id: str | None
    map_index: int | None

    def left(self, now: datetime) -> timedelta:
        return self.deadline - now


def _requests(conn: Connection, prefix: str, batch_ids: list[str]) -> dict[tuple[int, str], tuple[int, dict]]:
    """Latest audit row per (batch, step) of the given batches whose action starts with ``prefix``."""
    rows = conn.execute(
        select(audit_log.c.id, audit_log.c.action, audit_log.c.object_id, audit_log.c.details).where(
            audit_log.c.object_type == "writeoff_batch",
            audit_log.c.object_id.in_(batch_ids),
            audit_log.c.action.like(f"{prefix}%"),
        )
    ).all()
    out: dict[tuple[int, str], tuple[int, dict]] = {}
    for r in rows:
        key = (int(r.object_id), r.action[len(prefix) :])
        if key not in out or r.id > out[key][0]:
            out[key] = (r.id, json.loads(r.details or "{}"))
    return out


def due_reminders(conn: Connection, now: datetime) -> list[Reminder]:
    """The open requests due a reminder at ``now``; the window follows the tier that was asked, as defined by the
    policy recorded on the batch. Only the audit rows of batches still waiting for people are read."""
    from writeoffs.approvals import governing_tiers

    waiting = {s for statuses in WAITING.values() for s in statuses}
    status = dict(
        conn.execute(
            select(writeoff_batches.c.id, writeoff_batches.c.status).where(writeoff_batches.c.status.in_(waiting))
        ).all()
    )
    if not status:
        return []
    ids = [str(b) for b in status]
    requested = _requests(conn, REQUESTED, ids)
    reminded = _requests(conn, REMINDED, ids)
    due = []
    for (batch_id, step), (_id, d) in sorted(requested.items()):
        if status.get(batch_id) not in WAITING.get(step, ()):
            continue
        deadline = datetime.fromisoformat(d["deadline"])
        done = reminded.get((batch_id, step))
        if done is not None and done[1].get("deadline") == d["deadline"]:
            continue
        tier: Tier = tier_named(d["tier"], governing_tiers(conn, batch_id))
        if not (now < deadline <= now + tier.reminder_before):
            continue
        due.append(
            Reminder(
                batch_id=batch_id,
                step=step,
                tier=tier.name,
                deadline=deadline,
                assigned_users=tuple(d.get("assigned_users") or ()),
                dag_run_id=d.get("dag_run_id"),
                task_id=d.get("task_id"),
                map_index=d.get("map_index"),
            )
        )
    return due


def record_reminded(conn: Connection, reminder: Reminder, channels: Sequence[str]) -> None:
    """Audit that the reminder went out (so it goes out once per request)."""
    audit.append(
        conn,
        actor=SYSTEM_ACTOR,
        action=f"{REMINDED}{reminder.step}",
        object_type="writeoff_batch",
        object_id=reminder.batch_id,
        details={
            "deadline": reminder.deadline.isoformat(),
            "assigned_users": list(reminder.assigned_users),
            "channels": list(channels),
        },
    )
