"""Approvers are told: the approval operator's request and refusal notices, through the real SMTP and Slack provider
notifiers, into local receivers; the link opens the request's page in the Airflow UI.

The operator runs against a real (SQLite) ledger with the task context the task runner hands it; only the two calls
that need a running Airflow are recorded instead (writing the request, re-opening it). The end-to-end path on a real
api-server is in test_approval_hitl.py.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.approval_support import make_batch
from tests.receivers import SmtpReceiver, WebhookReceiver
from writeoffs.db.schema import audit_log
from writeoffs.tiers import SYSTEM_ACTOR
from writeoffs_airflow import alerts

BASE = "http://airflow.example:8080"
RUN_ID = "manual__2026-11-24T10:00:00+00:00"
ADDRESSES = {"ar_manager": "ar.manager@example.com", "controller": "controller@example.com"}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(alerts, "_warned", set())
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AIRFLOW_CONN_WRITEOFFS_SLACK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_WRITEOFFS_SMTP", raising=False)
    monkeypatch.delenv("WRITEOFFS_REPORTS_URL", raising=False)


def smtp_conn(smtp: SmtpReceiver, addresses: dict[str, str] = ADDRESSES) -> str:
    conn = json.loads(smtp.airflow_conn(to=""))
    conn["extra"]["approver_addresses"] = addresses
    return json.dumps(conn)


@pytest.mark.parametrize(
    ("base", "map_index", "expected"),
    [
        (
            BASE,
            3,
            f"{BASE}/dags/writeoff_approval/runs/manual__2026-11-24T10%3A00%3A00%2B00%3A00"
            "/tasks/batch.approve/mapped/3/required_actions",
        ),
        (
            "https://corp.example/airflow/",
            -1,
            "https://corp.example/airflow/dags/writeoff_approval/runs/manual__2026-11-24T10%3A00%3A00%2B00%3A00"
            "/tasks/batch.approve/required_actions",
        ),
    ],
)
def test_the_link_is_the_ui_route_of_the_task_instance(base: str, map_index: int, expected: str) -> None:
    # The UI routes a mapped task instance under /mapped/<index> (Airflow's generate_link_to_ui puts map_index in
    # the query, which the UI ignores: "No Task Instance found"); a path prefix of the base URL is kept.
    assert alerts.required_action_url("writeoff_approval", RUN_ID, "batch.approve", map_index, base) == expected


def test_no_base_url_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    with pytest.raises(ValueError, match="base_url"):
        alerts.required_action_url("d", "r", "t", 0)


# ------------------------------------------------------------------------------------------------ the operator


@pytest.fixture
def batch(make_ledger, ledger_env) -> tuple[Any, int]:
    engine = make_ledger("sqlite")
    ledger_env(engine)
    with engine.begin() as conn:
        from tests.factories import entity

        entity(conn)
        batch_id, _ = make_batch(conn, ["1200.00", "800.50"], tier="ar_manager", prepared_by="preparer", prefix="n")
    return engine, batch_id


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What the operator writes to Airflow (needs a task runner): recorded instead."""
    calls: list[dict] = []

    def upsert(**kw: Any) -> None:
        calls.append(kw)

    monkeypatch.setattr("airflow.providers.standard.operators.hitl.upsert_hitl_detail", upsert)
    monkeypatch.setattr("airflow.sdk.execution_time.hitl.upsert_hitl_detail", upsert)
    return calls


def context_for(op: Any) -> dict[str, Any]:
    ti = SimpleNamespace(
        id=uuid.uuid4(), dag_id="writeoff_approval", run_id=RUN_ID, task_id="batch.approve", map_index=3, try_number=1
    )
    return {"task": op, "task_instance": ti, "ti": ti, "run_id": RUN_ID, "dag": None, "params": {}}


LINK = (
    f"{BASE}/dags/writeoff_approval/runs/manual__2026-11-24T10%3A00%3A00%2B00%3A00/tasks/batch.approve/mapped/3"
    "/required_actions"
)


def open_request(batch_id: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Run the approve step's ``execute`` until it parks; returns the operator, its context and the park kwargs."""
    from airflow.sdk.exceptions import TaskAwaitingInput

    from writeoffs_airflow.hitl import BatchApprovalOperator

    op = BatchApprovalOperator(task_id="approve", batch_id=batch_id)
    ctx = context_for(op)
    with pytest.raises(TaskAwaitingInput) as park:
        op.execute(ctx)
    return op, ctx, park.value.kwargs


def test_a_new_request_reaches_the_assigned_approvers_by_email_and_slack(
    batch, recorded, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, batch_id = batch
    caplog.set_level(logging.WARNING)
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn("T1/B2/secret"))
        # cfo has an address but is not asked: never e-mailed.
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp_conn(smtp, {**ADDRESSES, "cfo": "cfo@example.com"}))
        op, _, _ = open_request(batch_id)
        (mail,) = smtp.wait_for(1)
        (req,) = slack.wait_for(1)
    (written,) = recorded
    subject = f"ar_manager tier · 2,000.50 USD · US01 — batch {batch_id}: approve write-off of 2 invoices"
    assert written["subject"].startswith(subject) and op.subject == written["subject"]
    assert [u["id"] for u in written["assigned_users"]] == ["ar_manager", "controller"]
    # e-mail: to the assigned approvers' addresses only, with the summary and the link that opens the request
    assert sorted(mail.rcpt_tos) == ["ar.manager@example.com", "controller@example.com"]
    assert mail.subject == written["subject"]
    body = mail.text()
    assert f'href="{LINK}"' in body
    assert "Who may answer: ar_manager, controller" in body and "no answer by then: the batch expires" in body
    assert f"batch {batch_id} (US01, business date 2026-11-24), tier ar_manager" in body
    # Slack: the same, through the provider's webhook hook
    assert req.path == "/T1/B2/secret"
    text = req.json["text"]
    assert subject in text and f"<{LINK}|open the request>" in text and "*For:* ar_manager, controller" in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_body_says_who_decides_by_when_and_what_a_timeout_does(batch, recorded) -> None:
    _, batch_id = batch
    _, _, park = open_request(batch_id)
    body = recorded[0]["body"]
    deadline = datetime.fromisoformat(park["deadline"])
    assert timedelta(minutes=59) < deadline - datetime.now(UTC) <= timedelta(hours=1)  # tier ar_manager: 1 h
    assert "| Who may approve | ar_manager, controller |" in body
    assert f"| Answer by | {deadline.strftime('%Y-%m-%d %H:%M UTC')}; no answer by then: the batch expires" in body
    assert "a second request, **Confirm**, then opens (by a second person (ar_manager, controller)" in body
    assert "| 12 (min 6) | 3 (min 2) | 90 (min 60) |" not in body  # test items carry no policy minimums
    assert "| 12 | 3 | 90 |" in body


def test_a_refused_answer_is_audited_explained_to_the_people_concerned_and_the_request_reopened(
    batch, recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import TaskAwaitingInput

    from writeoffs_airflow.hitl import BatchApprovalOperator

    engine, batch_id = batch
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp_conn(smtp))
        _, _, park = open_request(batch_id)
        smtp.wait_for(1)
        slack.wait_for(1)
        # The answer arrives in a new process: a fresh operator, as the task runner builds it from the DAG file.
        op = BatchApprovalOperator(task_id="approve", batch_id=batch_id)
        event = {
            "chosen_options": ["Approve"],
            "params_input": {"exclude_invoice_refs": "INV-nope-9 [x](http://evil)", "comment": ""},
            "responded_at": datetime.now(UTC),
            "responded_by_user": {"id": "controller", "name": "controller"},
        }
        with pytest.raises(TaskAwaitingInput) as reopened:
            op.execute_complete(context_for(op), event, **park)
        mails = smtp.wait_for(2)
        posts = slack.wait_for(2)
    assert reopened.value.kwargs == park  # same deadline: a refusal never extends the window
    assert len(recorded) == 2  # written, then re-opened
    with engine.connect() as conn:
        refused = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(audit_log.c.action == "approval.refused")
        ).one()
    assert refused.actor == "controller" and "INV-nope-9" in json.loads(refused.details)["reason"]
    mail = mails[1]
    assert mail.subject.startswith("Answer refused: ar_manager tier · 2,000.50 USD · US01")
    assert sorted(mail.rcpt_tos) == ["ar.manager@example.com", "controller@example.com"]
    body = mail.text()
    assert "The approve answer by controller was not recorded: " in body and "INV-nope-9" in body
    assert "Who may decide (ar_manager tier): ar_manager, controller." in body
    assert "The request stays open until " in body and f'href="{LINK}"' in body
    assert '<a href="http://evil"' not in body  # the refused input is text, not a link
    text = posts[1].json["text"]
    assert "was not recorded" in text and "Who may decide (ar_manager tier)" in text and f"<{LINK}|" in text


def test_a_failing_channel_neither_fails_the_request_nor_stops_the_other(
    batch, recorded, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, batch_id = batch
    with WebhookReceiver(status=500, reply=b"boom") as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp_conn(smtp, {"controller": "controller@example.com"}))
        caplog.set_level(logging.WARNING)
        open_request(batch_id)  # parks normally
        (mail,) = smtp.wait_for(1)
        assert len(slack.requests) >= 1
    assert mail.rcpt_tos == ["controller@example.com"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("No e-mail address for ar_manager" in m for m in messages)
    assert any("ApprovalSlackNotifier failed" in m for m in messages)


# ------------------------------------------------------------------------------------------------ reminders


def test_the_assigned_people_are_reminded_once_before_the_request_times_out(batch, recorded, monkeypatch) -> None:
    from writeoffs.db.schema import writeoff_batches
    from writeoffs_airflow.reminders import send_due_reminders

    engine, batch_id = batch
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp_conn(smtp))
        _, ctx, park = open_request(batch_id)
        smtp.wait_for(1), slack.wait_for(1)  # the notice that the request opened
        deadline = datetime.fromisoformat(park["deadline"])
        # The test tier answers within 1 hour: reminded in the last quarter (15 minutes), not before.
        assert send_due_reminders(ctx, now=deadline - timedelta(minutes=16)) == []
        sent = send_due_reminders(ctx, now=deadline - timedelta(minutes=14))
        assert sent == [{"batch_id": batch_id, "step": "approve", "recipients": ["ar_manager", "controller"]}]
        mails, posts = smtp.wait_for(2), slack.wait_for(2)
        # once per request, however often the DAG runs
        assert send_due_reminders(ctx, now=deadline - timedelta(minutes=5)) == []
    mail = mails[-1]
    assert mail.subject.startswith(f"Reminder: batch {batch_id} waits for your approve decision")
    assert sorted(mail.rcpt_tos) == ["ar.manager@example.com", "controller@example.com"]
    assert f'href="{LINK}"' in mail.text()
    assert f"<{LINK}|open the request>" in posts[-1].json["text"]
    with engine.connect() as conn:
        reminded = conn.execute(
            select(audit_log.c.actor, audit_log.c.details).where(audit_log.c.action == "approval.reminded.approve")
        ).all()
    assert len(reminded) == 1 and reminded[0].actor == SYSTEM_ACTOR
    assert json.loads(reminded[0].details)["channels"] == ["ApprovalEmailNotifier", "ApprovalSlackNotifier"]
    # An answered (or expired, escalated) request is never reminded.
    with engine.begin() as conn:
        other, _ = make_batch(conn, ["300.00"], tier="ar_manager", prepared_by="preparer", prefix="r2")
    _, ctx2, park2 = open_request(other)
    with engine.begin() as conn:
        conn.execute(writeoff_batches.update().where(writeoff_batches.c.id == other).values(status="rejected"))
    assert send_due_reminders(ctx2, now=datetime.fromisoformat(park2["deadline"]) - timedelta(minutes=1)) == []
