"""The daily ingest's deadline alert on a real Airflow (api-server + scheduler + dag-processor, LocalExecutor).

A run stuck waiting for a worker slot (the default pool emptied: the run's first task cannot start) passes its deadline;
the scheduler finds the deadline missed and hands the SyncCallback to the executor, which runs the project's
callback (writeoffs_airflow.alerts.deadline_missed) — no triggerer is started — and the alert reaches the local
Slack and SMTP receivers. The deadline is set to 2 seconds through WRITEOFFS_INGEST_DEADLINE_SECONDS, as a
deployment would set it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.airflow_local import start_airflow
from tests.receivers import SmtpReceiver, WebhookReceiver

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "ar_aging_ingest"


def test_a_run_past_its_deadline_alerts_through_both_channels(tmp_path: Path) -> None:
    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        server = start_airflow(
            dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
            env={
                "WRITEOFFS_INGEST_DEADLINE_SECONDS": "2",
                "WRITEOFFS_INGEST_SCHEDULE": "",  # manual only: no scheduled run of its own
                "WRITEOFFS_DATA_DIR": str(tmp_path / "data"),
                "AIRFLOW_CONN_WRITEOFFS_SLACK": slack.airflow_conn("T1/B2/deadline"),
                "AIRFLOW_CONN_WRITEOFFS_SMTP": smtp.airflow_conn(to="controller@example.com"),
            },
        )
        try:
            with server.client() as c:  # the run's first tasks wait in the default pool: none can start
                body = {"name": "default_pool", "slots": 0}
                r = c.patch("/pools/default_pool", json=body, params={"update_mask": "slots"})
                r.raise_for_status()
            run_id = "manual__deadline_probe"
            server.trigger(DAG_ID, run_id, {"as_of": "2026-11-24"})
            (req,) = slack.wait_for(1, timeout=120)
            (mail,) = smtp.wait_for(1, timeout=60)
            state = server.run_state(DAG_ID, run_id)
            base_url = server.base_url
        finally:
            server.stop()
    assert state in ("queued", "running")  # the alert came while the run was still not done
    text = req.json["text"]
    assert req.path == "/T1/B2/deadline"
    for part in (DAG_ID, run_id, "*Business date:* 2026-11-24", f"{base_url}/dags/{DAG_ID}/runs/{run_id}"):
        assert part in text, part
    assert mail.subject == f"[Airflow] {DAG_ID} missed its deadline (business date 2026-11-24)"
    assert mail.rcpt_tos == ["controller@example.com"]
    assert len(slack.requests) == 1  # one deadline, one alert
