"""Failure alerts for every DAG of the project: Slack (incoming webhook) and e-mail (SMTP), through the providers.

Usage (every DAG wires this in through writeoffs_airflow.defaults)::

    default_args = {"owner": "finance-data", "retries": 1, "on_failure_callback": failure_callbacks()}

Each channel is an Airflow connection:

- ``writeoffs_slack``: the Slack provider's webhook hook reads the webhook URL from the password (a full
  ``https://hooks.slack.com/services/T/B/X`` URL) or builds it as ``host`` + ``/`` + password; connection type
  ``slackwebhook`` or ``http``.
- ``writeoffs_smtp``: SMTP host/port/login; extra ``from_email`` and ``to`` (comma-separated recipients; the
  environment variable ``WRITEOFFS_ALERT_EMAIL_TO`` is the fallback), and the provider's ``disable_tls`` /
  ``disable_ssl`` switches.

``failure_callbacks()`` runs at DAG parse time, so it must not look anything up: it only builds the notifier
objects. Whether a channel is configured is decided when a failure actually happens (in the task process);
an unconfigured channel is skipped and logged once per process, so a deployment without Slack still e-mails.

The message names the DAG, task, run, business date, the error (for reconciliation: the break summary) and a link
to the task log in the Airflow UI (``[api] base_url``).

A run that has not succeeded by its deadline (Airflow's deadline alerts, :mod:`writeoffs_airflow.deadlines`) is
reported through the same two notifiers with a :class:`DeadlineMissed` message (:func:`deadline_missed`).

The same two channels tell approvers that a write-off request waits for them, or that their answer was refused
(:func:`approval_notifiers`, :class:`ApprovalNotice`; called by ``writeoffs_airflow.hitl``).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

log = logging.getLogger(__name__)

SLACK_CONN_ID = "writeoffs_slack"
SMTP_CONN_ID = "writeoffs_smtp"
DEFAULT_FROM = "airflow-writeoffs@localhost"
#: Slack renders up to ~40k characters, but a wall of text hides the point: the log link has the rest.
MAX_ERROR_CHARS = 3000

_warned: set[str] = set()


def _connection(conn_id: str, channel: str) -> Any | None:
    """The connection, or None (logged once per process) when it is not configured."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        if conn_id not in _warned:
            _warned.add(conn_id)
            log.warning("%s alerts are off: Airflow connection %r is not configured", channel, conn_id)
        return None


# --- the message ------------------------------------------------------------------------------------------------


def _as_date(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def business_date(context: Any) -> date | None:
    """The run's business date for an alert (:func:`writeoffs_airflow.rundate.business_date`), or None when the run
    has none or a bad one: an alert about a failed run must still go out."""
    from writeoffs.errors import WriteoffError
    from writeoffs_airflow.rundate import business_date as resolved

    try:
        return resolved(context)
    except WriteoffError:
        return None


def _log_url(context: Any, dag_id: str, run_id: str, task_id: str) -> str:
    ti = context.get("ti") or context.get("task_instance")
    url = getattr(ti, "log_url", None)
    if url:
        return str(url)
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080/")
    return f"{base.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}"


def _date_text(day: date | None) -> str:
    """A business date as the alerts print it: ISO, or ``n/a`` when the run has none."""
    return day.isoformat() if day else "n/a"


def _table_rows(rows: tuple[tuple[str, str], ...]) -> str:
    """The HTML rows of an alert's facts table: one label and one escaped value a row."""
    return "".join(f"<tr><th align='left'>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)


@dataclass(frozen=True, slots=True)
class FailureAlert:
    dag_id: str
    task_id: str
    run_id: str
    business_date: date | None
    error: str
    log_url: str
    try_number: int | None

    @classmethod
    def from_context(cls, context: Any) -> FailureAlert:
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", "?")
        task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
        run_id = getattr(ti, "run_id", None) or context.get("run_id") or "?"
        exc = context.get("exception")
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc or "unknown error")
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + " [...]"
        return cls(
            dag_id=str(dag_id),
            task_id=str(task_id),
            run_id=str(run_id),
            business_date=business_date(context),
            error=error,
            log_url=_log_url(context, str(dag_id), str(run_id), str(task_id)),
            try_number=getattr(ti, "try_number", None),
        )

    @property
    def subject(self) -> str:
        bd = _date_text(self.business_date)
        return f"[Airflow] {self.dag_id}.{self.task_id} failed (business date {bd})"

    def slack_text(self) -> str:
        bd = _date_text(self.business_date)
        return (
            f":red_circle: *{self.dag_id}* task *{self.task_id}* failed\n"
            f"*DAG:* {self.dag_id}  *Task:* {self.task_id}  *Run:* {self.run_id}  *Business date:* {bd}"
            f"  *Try:* {self.try_number if self.try_number is not None else 'n/a'}\n"
            f"*Error:* ```{self.error}```\n"
            f"*Log:* <{self.log_url}|open the task log> {self.log_url}"
        )

    def html(self) -> str:
        bd = _date_text(self.business_date)
        rows = (
            ("DAG", self.dag_id),
            ("Task", self.task_id),
            ("Run", self.run_id),
            ("Business date", bd),
            ("Try", str(self.try_number) if self.try_number is not None else "n/a"),
        )
        cells = _table_rows(rows)
        url = html.escape(self.log_url, quote=True)
        return (
            f"<p><b>{html.escape(self.dag_id)}.{html.escape(self.task_id)} failed.</b></p>"
            f"<table>{cells}</table>"
            f"<p><b>Error</b></p><pre>{html.escape(self.error)}</pre>"
            f'<p>Task log: <a href="{url}">{url}</a></p>'
        )


@dataclass(frozen=True, slots=True)
class DeadlineMissed:
    """A run that had not succeeded by its deadline (still running, queued, or failed): built from what Airflow hands
    a deadline callback, ``{"dag_run": <the REST API's DAG run>, "deadline": {"id", "deadline_time"}}``."""

    dag_id: str
    run_id: str
    business_date: date | None
    deadline_time: str
    state: str
    run_url: str

    @classmethod
    def from_context(cls, context: Any) -> DeadlineMissed:
        from urllib.parse import quote

        from airflow.configuration import conf

        from writeoffs.errors import WriteoffError
        from writeoffs_airflow.rundate import business_date_of_run

        run = context.get("dag_run") or {}
        run = run if isinstance(run, dict) else {}
        deadline = context.get("deadline") or {}
        dag_id = str(run.get("dag_id") or "?")
        run_id = str(run.get("dag_run_id") or run.get("run_id") or "?")
        try:
            bd: date | None = business_date_of_run(run)
        except (WriteoffError, ValueError):  # an alert about a late run must still go out
            bd = None
        when = deadline.get("deadline_time") if isinstance(deadline, dict) else None
        when_text = when.isoformat() if isinstance(when, datetime) else str(when or "n/a")
        base = conf.get("api", "base_url", fallback="http://localhost:8080/")
        return cls(
            dag_id=dag_id,
            run_id=run_id,
            business_date=bd,
            deadline_time=when_text,
            state=str(run.get("state") or "unknown"),
            run_url=f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}",
        )

    @property
    def subject(self) -> str:
        bd = _date_text(self.business_date)
        return f"[Airflow] {self.dag_id} missed its deadline (business date {bd})"

    def slack_text(self) -> str:
        bd = _date_text(self.business_date)
        return (
            f":alarm_clock: *{self.dag_id}* has not succeeded by its deadline {self.deadline_time}\n"
            f"*DAG:* {self.dag_id}  *Run:* {self.run_id}  *Business date:* {bd}  *State:* {self.state}\n"
            f"*Run:* <{self.run_url}|open the run> {self.run_url}"
        )

    def html(self) -> str:
        bd = _date_text(self.business_date)
        rows = (
            ("DAG", self.dag_id),
            ("Run", self.run_id),
            ("Business date", bd),
            ("Deadline", self.deadline_time),
            ("State", self.state),
        )
        cells = _table_rows(rows)
        url = html.escape(self.run_url, quote=True)
        return (
            f"<p><b>{html.escape(self.dag_id)} has not succeeded by its deadline.</b></p>"
            f"<table>{cells}</table>"
            f'<p>Run: <a href="{url}">{url}</a></p>'
        )


# --- notifiers --------------------------------------------------------------------------------------------------


class AlertMessage(Protocol):
    @property
    def subject(self) -> str: ...

    def slack_text(self) -> str: ...

    def html(self) -> str: ...


#: Builds the message of one alert from the context Airflow hands the callback.
MessageBuilder = Callable[[Any], AlertMessage]


class LedgerSlackNotifier(SlackWebhookNotifier):
    """The provider's webhook notifier with the project's message, skipped when its connection is missing.
    ``message`` builds the text from the context: a task failure by default, :class:`DeadlineMissed` for deadlines."""

    def __init__(
        self,
        slack_webhook_conn_id: str = SLACK_CONN_ID,
        message: MessageBuilder = FailureAlert.from_context,
        **kwargs: Any,
    ) -> None:
        super().__init__(slack_webhook_conn_id=slack_webhook_conn_id, text="", **kwargs)
        self.message = message

    def notify(self, context: Any) -> None:
        if _connection(self.slack_webhook_conn_id, "Slack") is None:
            return
        alert = self.message(context)
        # Sent through the provider's hook (URL building, retries, response check), not a hand-rolled request.
        self.hook.send(text=alert.slack_text(), unfurl_links=False)


class LedgerEmailNotifier(SmtpNotifier):
    """The provider's SMTP notifier with the project's message; recipients from the connection's extra ``to``."""

    def __init__(
        self, smtp_conn_id: str = SMTP_CONN_ID, message: MessageBuilder = FailureAlert.from_context, **kwargs: Any
    ) -> None:
        super().__init__(to=[], smtp_conn_id=smtp_conn_id, subject="", html_content="", **kwargs)
        self.message = message

    def notify(self, context: Any) -> None:
        conn = _connection(self.smtp_conn_id, "E-mail")
        if conn is None:
            return
        extra = conn.extra_dejson or {}
        to = [a.strip() for a in str(extra.get("to") or os.environ.get("WRITEOFFS_ALERT_EMAIL_TO", "")).split(",")]
        to = [a for a in to if a]
        if not to:
            key = f"{self.smtp_conn_id}:to"
            if key not in _warned:
                _warned.add(key)
                log.warning(
                    "E-mail alerts are off: connection %r has no extra 'to' and WRITEOFFS_ALERT_EMAIL_TO is unset",
                    self.smtp_conn_id,
                )
            return
        alert = self.message(context)
        with self.hook as smtp:
            smtp.send_email_smtp(
                to=to,
                from_email=smtp.from_email or DEFAULT_FROM,
                subject=alert.subject,
                html_content=alert.html(),
                mime_charset="utf-8",
            )


def failure_callbacks() -> list[Any]:
    """Notifiers for ``on_failure_callback``: Slack and e-mail. Safe at parse time (no lookups, no I/O)."""
    return [LedgerSlackNotifier(), LedgerEmailNotifier()]


def deadline_missed(context: dict[str, Any], **kwargs: Any) -> None:
    """The callback of the project's deadline alerts (``SyncCallback``: Airflow's executor runs it, no triggerer).

    Sends :class:`DeadlineMissed` through both failure notifiers; a channel that is not configured is skipped as
    for failures. Every channel is tried; then the first error is raised, so Airflow records the callback as failed.
    """
    errors: list[Exception] = []
    for notifier in (
        LedgerSlackNotifier(message=DeadlineMissed.from_context),
        LedgerEmailNotifier(message=DeadlineMissed.from_context),
    ):
        try:
            notifier(context)
        except Exception as exc:  # the other channel must still be tried
            errors.append(exc)
    if errors:
        raise errors[0]


# --- approval requests ------------------------------------------------------------------------------------------
#
# Approvers are Airflow usernames (the tiers of the policy file). E-mail needs their addresses: the SMTP
# connection's extra ``approver_addresses`` maps username -> address. A username without an address is not
# guessed (and never replaced by a team list): it is logged, and Slack still names them.

#: A notice line from the ledger (customer-facing text never is, but tier names, refusal reasons and usernames are
#: input too) is cut to this length in messages; the request in Airflow has the rest.
MAX_NOTICE_LINE = 500


def required_action_url(dag_id: str, run_id: str, task_id: str, map_index: int, base_url: str | None = None) -> str:
    """The Airflow UI page of one task instance's Required Action (the form that answers the request).

    The UI resolves a mapped task instance only under ``/mapped/<index>``: Airflow's own
    ``HITLOperator.generate_link_to_ui`` puts ``map_index`` in the query string, which the UI ignores ("No Task
    Instance found"). ``base_url`` defaults to Airflow's ``[api] base_url``; a path prefix in it is kept.
    """
    from urllib.parse import quote

    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback=None)
    if not base_url:
        raise ValueError("Airflow's [api] base_url is not configured: no link to the request can be built")
    mapped = f"/mapped/{int(map_index)}" if map_index is not None and int(map_index) >= 0 else ""
    return (
        f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
        f"/tasks/{quote(task_id, safe='')}{mapped}/required_actions"
    )


@dataclass(frozen=True, slots=True)
class ApprovalNotice:
    """What the assigned approvers are told: a subject, a few summary lines and the link that opens the request."""

    recipients: tuple[str, ...]
    subject: str
    lines: tuple[str, ...]
    link: str | None

    def _lines(self) -> list[str]:
        from writeoffs.errors import shorten

        return [shorten(line, MAX_NOTICE_LINE) for line in self.lines]

    def slack_text(self) -> str:
        def esc(text: str) -> str:  # Slack's mrkdwn control characters: no links, mentions or <!channel>
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        out = [f":inbox_tray: *{esc(self.subject)}*", f"*For:* {esc(', '.join(self.recipients))}"]
        out += [esc(line) for line in self._lines()]
        out.append(f"*Answer in Airflow:* <{self.link}|open the request> {self.link}" if self.link else "")
        return "\n".join(line for line in out if line)

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._lines())
        link = ""
        if self.link:
            url = html.escape(self.link, quote=True)
            link = f'<p><b>Answer in Airflow:</b> <a href="{url}">{url}</a></p>'
        return (
            f"<p><b>{html.escape(self.subject)}</b></p>"
            f"<p>For: {html.escape(', '.join(self.recipients))}</p><ul>{items}</ul>{link}"
        )


def approver_addresses(extra: dict[str, Any], users: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(addresses, users without one) from the connection extra ``approver_addresses`` (username -> address)."""
    mapping = extra.get("approver_addresses") or {}
    if not isinstance(mapping, dict):
        mapping = {}
    found, missing = [], []
    for user in users:
        address = str(mapping.get(user) or "").strip()
        if address and "@" in address and "\n" not in address and "\r" not in address:
            found.append(address)
        else:
            missing.append(user)
    return list(dict.fromkeys(found)), missing


class ApprovalSlackNotifier(SlackWebhookNotifier):
    """Posts an :class:`ApprovalNotice` through the provider's webhook hook; skipped when Slack is not configured."""

    def __init__(self, notice: ApprovalNotice, slack_webhook_conn_id: str = SLACK_CONN_ID, **kwargs: Any) -> None:
        super().__init__(slack_webhook_conn_id=slack_webhook_conn_id, text="", **kwargs)
        self.notice = notice

    def notify(self, context: Any) -> None:
        if _connection(self.slack_webhook_conn_id, "Slack") is None:
            return
        self.hook.send(text=self.notice.slack_text(), unfurl_links=False)


class ApprovalEmailNotifier(SmtpNotifier):
    """E-mails an :class:`ApprovalNotice` to the recipients' addresses (connection extra ``approver_addresses``)."""

    def __init__(self, notice: ApprovalNotice, smtp_conn_id: str = SMTP_CONN_ID, **kwargs: Any) -> None:
        super().__init__(to=[], smtp_conn_id=smtp_conn_id, subject="", html_content="", **kwargs)
        self.notice = notice

    def notify(self, context: Any) -> None:
        conn = _connection(self.smtp_conn_id, "E-mail")
        if conn is None:
            return
        to, missing = approver_addresses(conn.extra_dejson or {}, self.notice.recipients)
        if missing:
            log.warning(
                "No e-mail address for %s in connection %r (extra 'approver_addresses'): not e-mailed",
                ", ".join(missing),
                self.smtp_conn_id,
            )
        if not to:
            return
        with self.hook as smtp:
            smtp.send_email_smtp(
                to=to,
                from_email=smtp.from_email or DEFAULT_FROM,
                subject=" ".join(self.notice.subject.split())[:250],  # one header line, whatever the input
                html_content=self.notice.html(),
                mime_charset="utf-8",
            )


def approval_notifiers(notice: ApprovalNotice) -> list[Any]:
    """E-mail and Slack for one approval notice; each is skipped (logged once) when its connection is missing."""
    return [ApprovalEmailNotifier(notice), ApprovalSlackNotifier(notice)]
