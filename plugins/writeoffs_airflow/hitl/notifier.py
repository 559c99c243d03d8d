"""Notices to the people a request is assigned to (or whose answer was refused): e-mail and Slack with a link to the
request's page in the UI."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger(__name__)


class ApproverNotifier(BaseNotifier):
    """Tells the assigned approvers that a batch waits for them: e-mail and Slack (``writeoffs_airflow.alerts``),
    with the batch summary and a link that opens the request in the Airflow UI.

    A channel that fails is logged and does not fail the task: the request is open in Airflow either way, and a
    Slack outage must not turn into a retried approval task.
    """

    def notify(self, context: Any) -> None:
        op = context["task"]
        users = tuple(u["name"] for u in (op.assigned_users or []))
        send_notice(context, recipients=users, subject=op.subject, lines=tuple(getattr(op, "notice_lines", ())))


def request_link(context: Any) -> str | None:
    from writeoffs_airflow.alerts import required_action_url

    ti = context["task_instance"]
    try:
        return required_action_url(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
    except ValueError as exc:  # no [api] base_url: the message still names the batch, run and task
        log.warning("%s", exc)
        return None


def send_notice(context: Any, *, recipients: Sequence[str], subject: str, lines: Sequence[str]) -> None:
    from writeoffs_airflow.alerts import ApprovalNotice, approval_notifiers

    ti = context["task_instance"]
    link = request_link(context)
    where = f"DAG {ti.dag_id}, run {ti.run_id}, task {ti.task_id}, map index {ti.map_index}"
    notice = ApprovalNotice(recipients=tuple(recipients), subject=subject, lines=(*lines, where), link=link)
    log.info("APPROVAL NOTICE for %s: %s (%s)", ", ".join(recipients), subject, link or where)
    for notifier in approval_notifiers(notice):
        try:
            notifier.notify(context)
        except Exception:  # one channel's outage must not fail the request or hide the other channel
            log.exception("Approval notice through %s failed", type(notifier).__name__)
