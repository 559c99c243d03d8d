"""No answer is lost, however fast: twenty Required Actions, each answered the instant it opens.

Airflow 3.3.2's scheduler loses an answer that arrives before it has read the executor's result of the process
that parked the task (docs/approvals.md). With the stock LocalExecutor this test failed at its second request
(the task went up for retry, its answer archived, the run failed); ``writeoffs_airflow.executors`` fixes it. The
test answers each request as soon as the API lists it (polling every 20 ms) and asserts that every request was
answered once, by the authenticated user, that every task succeeded on its first try, and how soon after the
request opened the answer was recorded (Airflow's own ``created_at`` / ``responded_at``).
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from scripts.airflow_local import start_airflow

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "tests" / "integration" / "dags" / "hitl_early_answer_probe.py"
DAG_ID = DAG_FILE.stem
N = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_airflow(dag_files=[DAG_FILE], home=tmp_path_factory.mktemp("early-answer"))
    try:
        yield srv
    finally:
        srv.stop()


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_twenty_answers_given_the_instant_each_request_opens_are_all_kept(server) -> None:
    run_id = f"early_{uuid.uuid4().hex[:8]}"
    server.trigger(DAG_ID, run_id, {})
    answered: dict[str, int] = {}
    deadline = time.monotonic() + 900
    state = None
    next_state_check = 0.0
    with server.client("ar_manager") as c:
        while time.monotonic() < deadline:
            try:
                r = c.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails", params={"response_received": False})
            except httpx.TimeoutException:
                continue  # a slow poll on a busy machine: poll again (the answer can only come later, not be lost)
            r.raise_for_status()
            for d in r.json()["hitl_details"]:
                ti = d["task_instance"]
                if ti["state"] != "awaiting_input" or ti["task_id"] in answered:
                    continue
                a = c.patch(
                    f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails",
                    json={"chosen_options": ["Yes"], "params_input": {}},
                )
                answered[ti["task_id"]] = a.status_code
            if time.monotonic() >= next_state_check:
                state = c.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
                if state in ("success", "failed"):
                    break
                next_state_check = time.monotonic() + 1.0
            time.sleep(0.02)
        tis = c.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()["task_instances"]
        details = c.get(
            f"/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails", params={"response_received": True, "limit": 100}
        ).json()["hitl_details"]

    tries = {t["task_id"]: (t["state"], t["try_number"]) for t in tis}
    assert state == "success", f"run {state}; task states: {tries}\n{server.log_tail()}"
    assert answered == {f"ask_{i:02d}": 200 for i in range(N)}
    assert tries == {f"ask_{i:02d}": ("success", 1) for i in range(N)}, "an answer was lost: a task was retried"
    assert len(details) == N
    gaps_ms = []
    for d in details:
        assert d["chosen_options"] == ["Yes"]
        assert d["responded_by_user"]["name"] == "ar_manager"
        gaps_ms.append((_ts(d["responded_at"]) - _ts(d["created_at"])).total_seconds() * 1000)
    print(
        f"MEASURED request opened -> answer recorded: median {statistics.median(gaps_ms):.0f} ms, "
        f"max {max(gaps_ms):.0f} ms over {N} requests"
    )
    # Answered well inside the window in which Airflow 3.3.2 used to lose answers (up to the scheduler's next
    # read of the executor's results, ~1 s): the median is what the loop achieves on an unloaded machine.
    assert max(gaps_ms) < 1000, gaps_ms
