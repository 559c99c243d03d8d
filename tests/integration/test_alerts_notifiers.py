"""Failure notifiers through the real Slack and SMTP provider code, into real receivers on 127.0.0.1.

The context is what the task runner hands to ``on_failure_callback`` (task instance, params, dag run, exception).
The end-to-end path (a DAG run failing and calling these) is in test_reconcile_dag.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from tests.receivers import SmtpReceiver, WebhookReceiver
from writeoffs_airflow import alerts

ERROR = (
    "Reconciliation 2026-11-24: 2 break(s) (subledger_vs_gl 1, writeoff_entries 1). open AR 3000.0000 USD on 4 "
    "invoices of US01 differs from the GL AR control balance -42000.0000 by -45000.0000 <INV-WORKED-45000>"
)
RUN_ID = "asset_triggered__2026-11-24T18:02:11+00:00"


def failure_context(**over: object) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    ti = SimpleNamespace(
        dag_id="ledger_reconciliation", task_id="assert_no_breaks", run_id=RUN_ID, try_number=1, map_index=-1
    )
    ctx = {
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "params": {"as_of": None, "tolerance": ""},
        "dag_run": SimpleNamespace(conf={}, run_after=datetime(2026, 11, 24, 18, 2, 11, tzinfo=UTC)),
        "logical_date": None,
        "exception": AirflowFailException(ERROR),
    }
    ctx.update(over)
    return ctx


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "_warned", set())
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    monkeypatch.delenv("AIRFLOW_CONN_WRITEOFFS_SLACK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_WRITEOFFS_SMTP", raising=False)
    monkeypatch.delenv("WRITEOFFS_ALERT_EMAIL_TO", raising=False)


EXPECTED_LOG = (
    "http://airflow.example:8080/dags/ledger_reconciliation/runs/asset_triggered__2026-11-24T18%3A02%3A11%2B00%3A00"
    "/tasks/assert_no_breaks"
)


def test_both_channels_receive_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn("T111/B222/secret"))
        monkeypatch.setenv(
            "AIRFLOW_CONN_WRITEOFFS_SMTP", smtp.airflow_conn(to="controller@example.com, cfo@example.com")
        )
        for notifier in alerts.failure_callbacks():
            notifier(failure_context())
        (req,) = slack.wait_for(1)
        (mail,) = smtp.wait_for(1)
    # Slack: the provider built the URL from host + token and posted JSON.
    assert req.path == "/T111/B222/secret"
    text = req.json["text"]
    for part in (
        "ledger_reconciliation",
        "assert_no_breaks",
        RUN_ID,
        "2026-11-24",
        "AirflowFailException",
        ERROR,
        EXPECTED_LOG,
    ):
        assert part in text, part
    # E-mail: envelope, subject, body with the same facts (HTML-escaped).
    assert mail.rcpt_tos == ["controller@example.com", "cfo@example.com"]
    assert mail.mail_from == "airflow@example.com"
    assert mail.subject == "[Airflow] ledger_reconciliation.assert_no_breaks failed (business date 2026-11-24)"
    body = mail.text()
    assert "&lt;INV-WORKED-45000&gt;" in body and "<INV-WORKED-45000>" not in body
    assert RUN_ID in body and EXPECTED_LOG in body and "subledger_vs_gl 1" in body


def test_ti_log_url_is_used_when_the_task_instance_has_one(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = failure_context()
    ctx["ti"] = SimpleNamespace(**vars(ctx["ti"]), log_url="https://airflow.corp/dags/x/runs/r/tasks/t?try_number=2")
    with WebhookReceiver() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        alerts.LedgerSlackNotifier()(ctx)
        (req,) = slack.wait_for(1)
    assert "https://airflow.corp/dags/x/runs/r/tasks/t?try_number=2" in req.json["text"]


def test_unconfigured_channels_are_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=alerts.__name__)
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        for _ in range(3):
            for notifier in alerts.failure_callbacks():
                notifier(failure_context())  # no exception: a missing channel must not hide the others
        assert slack.requests == [] and smtp.messages == []
    warnings = [r.getMessage() for r in caplog.records if r.name == alerts.__name__]
    assert sorted(warnings) == [
        "E-mail alerts are off: Airflow connection 'writeoffs_smtp' is not configured",
        "Slack alerts are off: Airflow connection 'writeoffs_slack' is not configured",
    ]


def test_email_recipients_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp.airflow_conn(to=""))
        alerts.LedgerEmailNotifier()(failure_context())
        assert smtp.messages == []  # nobody to write to: skipped, not an error
        monkeypatch.setenv("WRITEOFFS_ALERT_EMAIL_TO", "ar-team@example.com")
        alerts.LedgerEmailNotifier()(failure_context())
        (mail,) = smtp.wait_for(1)
    assert mail.rcpt_tos == ["ar-team@example.com"]


def test_slack_error_response_surfaces_from_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowException

    with WebhookReceiver(status=404, reply=b"no_service") as slack:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        with pytest.raises(AirflowException, match="no_service"):
            alerts.LedgerSlackNotifier()(failure_context())
        assert len(slack.requests) == 1


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({"params": {"as_of": "2026-11-20"}}, date(2026, 11, 20)),
        ({"data_interval_end": datetime(2026, 11, 21, 5, 30, tzinfo=UTC)}, date(2026, 11, 21)),
        (
            {
                "triggering_asset_events": {
                    "a": [
                        SimpleNamespace(extra={"as_of": "2026-11-19"}),
                        SimpleNamespace(extra={"as_of": "2026-11-22"}),
                    ]
                }
            },
            date(2026, 11, 22),
        ),
        # logical_date is never used (None for manual and asset runs in Airflow 3): run_after
        ({"logical_date": datetime(2026, 11, 23, 18, 30, tzinfo=UTC)}, date(2026, 11, 24)),
        ({}, date(2026, 11, 24)),  # manual/asset run without a data interval: run_after
        ({"params": {"as_of": "24/11/2026"}}, None),  # a bad date: the alert still goes out, without a date
    ],
)
def test_business_date_sources_in_order(over: dict, expected: date | None) -> None:
    """The alerts read the one business-date rule (writeoffs_airflow.rundate) every DAG uses."""
    assert alerts.business_date(failure_context(**over)) == expected


def test_every_dag_reads_the_business_date_through_the_one_rule() -> None:
    """No DAG or plugin derives the business date on its own (logical_date, data_interval_end, run_after)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*root.glob("dags/*.py"), *root.glob("plugins/writeoffs_airflow/*.py")]:
        if path.name == "rundate.py":
            continue
        text = path.read_text(encoding="utf-8")
        for needle in (".logical_date", '"logical_date"', "data_interval_end", ".run_after"):
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []


# --- deadline alerts (writeoffs_airflow.deadlines) --------------------------------------------------------------

INGEST_RUN_ID = "scheduled__2026-11-24T05:30:00+00:00"


def deadline_context(**run_over: object) -> dict:
    """What Airflow's ``Deadline.handle_miss`` hands the callback: the run as the REST API's DAGRunResponse (JSON
    mode) and the deadline; no task instance, no exception."""
    run = {
        "dag_run_id": INGEST_RUN_ID,
        "dag_id": "ar_aging_ingest",
        "logical_date": "2026-11-24T05:30:00Z",
        "queued_at": "2026-11-24T05:30:02.118000Z",
        "start_date": "2026-11-24T05:30:03Z",
        "end_date": None,
        "data_interval_start": "2026-11-24T05:30:00Z",
        "data_interval_end": "2026-11-24T05:30:00Z",
        "run_after": "2026-11-24T05:30:00Z",
        "state": "running",
        "run_type": "scheduled",
        "conf": {},
    }
    run.update(run_over)
    return {
        "dag_run": run,
        "deadline": {"id": "0199", "deadline_time": datetime(2026, 11, 24, 7, 30, 2, tzinfo=UTC)},
    }


def test_the_context_matches_what_airflow_sends() -> None:
    """The keys the deadline message reads exist in Airflow's DAG run model (a rename would silently lose them)."""
    from airflow.api_fastapi.core_api.datamodels.dag_run import DAGRunResponse

    fields = set(DAGRunResponse.model_fields)
    assert {"dag_run_id", "dag_id", "conf", "state", "data_interval_end", "run_after"} <= fields


def test_a_missed_deadline_reaches_both_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline callback itself (what the executor runs when the scheduler finds the deadline passed), through
    the real provider notifiers into the local receivers. The scheduler/executor side is in
    test_deadline_alert_airflow.py."""
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn("T111/B222/secret"))
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp.airflow_conn(to="controller@example.com"))
        alerts.deadline_missed(context=deadline_context())
        (req,) = slack.wait_for(1)
        (mail,) = smtp.wait_for(1)
    run_url = "http://airflow.example:8080/dags/ar_aging_ingest/runs/scheduled__2026-11-24T05%3A30%3A00%2B00%3A00"
    text = req.json["text"]
    for part in ("ar_aging_ingest", "deadline 2026-11-24T07:30:02+00:00", INGEST_RUN_ID, "2026-11-24", "running"):
        assert part in text, part
    assert run_url in text
    assert mail.subject == "[Airflow] ar_aging_ingest missed its deadline (business date 2026-11-24)"
    assert mail.rcpt_tos == ["controller@example.com"]
    body = mail.text()
    assert INGEST_RUN_ID in body and run_url in body and "2026-11-24T07:30:02+00:00" in body


def test_a_deadline_alert_reads_the_as_of_of_a_manual_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The business date follows the one rule: a manual run's conf ``as_of`` wins over its run_after."""
    with WebhookReceiver() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        ctx = deadline_context(conf={"as_of": "2026-11-20"}, data_interval_end=None, run_type="manual")
        alerts.deadline_missed(ctx)
        (req,) = slack.wait_for(1)
    assert "*Business date:* 2026-11-20" in req.json["text"]
    bad = alerts.DeadlineMissed.from_context(deadline_context(conf={"as_of": "20/11/2026"}))
    assert bad.business_date is None  # a bad date does not stop the alert


def test_a_failing_channel_does_not_stop_the_other_and_fails_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowException

    with WebhookReceiver(status=500, reply=b"down") as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp.airflow_conn())
        with pytest.raises(AirflowException, match="down"):
            alerts.deadline_missed(deadline_context())
        smtp.wait_for(1)  # the e-mail still went out
    assert len(slack.requests) >= 1


def test_the_deadline_interval_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from writeoffs_airflow import deadlines

    env = deadlines.INGEST_DEADLINE_ENV
    monkeypatch.delenv(env, raising=False)
    (alert,) = deadlines.ingest_deadline()
    assert alert.interval == timedelta(hours=2)
    assert alert.callback.path == "writeoffs_airflow.alerts.deadline_missed"
    monkeypatch.setenv(env, "900")
    assert deadlines.ingest_deadline()[0].interval == timedelta(minutes=15)
    monkeypatch.setenv(env, "0")
    assert deadlines.ingest_deadline() == []  # explicitly off
    for bad in ("-5", "2h", "1.5", "٣", "nan"):
        monkeypatch.setenv(env, bad)
        with pytest.raises(ValueError, match=env):
            deadlines.ingest_deadline()
