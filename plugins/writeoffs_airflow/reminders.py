"""Reminders to the assigned approvers before a request times out (the ``writeoff_approval_reminders`` DAG).

Which requests are due one is decided in the ledger (``writeoffs.approval_reminders``); this module sends each by
e-mail and Slack (the same notifiers and link as the notice when the request opened) and audits it, so a request
is reminded once. A channel that fails is logged; the reminder is still audited with the channels that worked.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

APPROVAL_DAG = "writeoff_approval"


def send_due_reminders(context: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    from writeoffs.approval_reminders import due_reminders, record_reminded
    from writeoffs_airflow.alerts import ApprovalNotice, approval_notifiers, required_action_url
    from writeoffs_airflow.ledger import ledger_engine

    engine = ledger_engine()
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        due = due_reminders(conn, now)
    log.info("%d approval request(s) due a reminder at %s", len(due), now.isoformat(timespec="seconds"))
    sent = []
    for r in due:
        link = None
        if r.dag_run_id and r.task_id:
            try:
                link = required_action_url(APPROVAL_DAG, r.dag_run_id, r.task_id, r.map_index)
            except ValueError as exc:  # no [api] base_url: the notice names the task instead
                log.warning("No link for batch %s: %s", r.batch_id, exc)
        hours = r.left(now).total_seconds() / 3600
        notice = ApprovalNotice(
            recipients=r.assigned_users,
            subject=f"Reminder: batch {r.batch_id} waits for your {r.step} decision ({hours:.1f} h left)",
            lines=(
                f"{r.step.capitalize()} step, batch {r.batch_id}, tier {r.tier}",
                f"Answer by: {r.deadline.isoformat(timespec='minutes')} (then it times out as the request says)",
                f"Who may answer: {', '.join(r.assigned_users)}",
                f"DAG {APPROVAL_DAG}, run {r.dag_run_id}, task {r.task_id}, map index {r.map_index}",
            ),
            link=link,
        )
        channels = []
        for notifier in approval_notifiers(notice):
            try:
                notifier.notify(context)
                channels.append(type(notifier).__name__)
            except Exception:  # one channel's outage must not stop the other or the audit
                log.exception("Reminder through %s failed", type(notifier).__name__)
        with engine.begin() as conn:
            record_reminded(conn, r, channels)
        log.info("Reminded %s of batch %s (%s step) via %s", ", ".join(r.assigned_users), r.batch_id, r.step, channels)
        sent.append({"batch_id": r.batch_id, "step": r.step, "recipients": list(r.assigned_users)})
    return sent
