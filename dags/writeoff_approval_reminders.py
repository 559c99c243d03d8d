"""
### Approval reminders: tell the assigned people before a request times out

Every 15 minutes, finds the open approval and confirmation requests whose deadline is closer than a quarter of
their tier's response time (e.g. 12 hours before a 48-hour deadline) and reminds the people they are assigned to,
by e-mail and Slack, with the link that opens the request. Each request is reminded once (audited as
`approval.reminded.<step>`); answered, expired and escalated requests are never reminded. See docs/approvals.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast


@dag(
    dag_id="writeoff_approval_reminders",
    schedule="*/15 * * * *",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=14),
    default_args=default_args(retry_delay=timedelta(minutes=1), execution_timeout=timedelta(minutes=10)),
    tags=["writeoffs", "approval", "notifications"],
    doc_md=__doc__,
)
def writeoff_approval_reminders() -> None:
    @task
    @fail_fast
    def remind() -> list[dict]:
        from writeoffs_airflow.reminders import send_due_reminders

        return send_due_reminders(get_current_context())

    remind()


writeoff_approval_reminders()
