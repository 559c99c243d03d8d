"""`make up`: unpause the scheduled pipeline DAGs once Airflow has parsed them, so the pipeline runs without a click.

New DAGs are paused at creation (Airflow's default, kept for every other way of running the project). Here each DAG
whose schedule is not None (a cron, a timetable or assets: ``timetable_summary`` in the REST API) is unpaused once,
the first time it is seen, and recorded in ``$AIRFLOW_HOME/writeoffs_unpaused.json``: a DAG you pause later stays
paused across restarts. Manual DAGs (``schedule=None``: writeoff_reversal, policy_whatif) are left paused.

First it creates the project's pools (``writeoffs_airflow.pools``: ``ledger_writes``). Runs in the background of
scripts/up.sh through the public REST API, logged in as the first ``admin`` of
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` (password from the demo passwords file). Exits when every DAG file in
the DAGs folder has been handled, after 10 minutes, on Ctrl-C, or when up.sh's process has gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from writeoffs_airflow.pools import ensure_pools

TIMEOUT_S = 600
USERS_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
FILE_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


def admin_login() -> tuple[str, str] | None:
    for pair in os.environ.get(USERS_VAR, "").split(","):
        user, _, role = pair.strip().partition(":")
        if role == "admin":
            passwords = json.loads(Path(os.environ[FILE_VAR]).read_text())
            return (user, passwords[user]) if user in passwords else None
    return None


def expected_dags() -> set[str]:
    # House rule: one DAG per file, file name = dag_id (tests/dags enforces it).
    folder = Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", "dags"))
    return {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}


def run(base: str) -> int:
    login = admin_login()
    if login is None:
        print("unpause_pipeline: no admin login configured; unpause the pipeline DAGs in the UI", file=sys.stderr)
        return 0
    record = Path(os.environ["AIRFLOW_HOME"]) / "writeoffs_unpaused.json"
    done: set[str] = set(json.loads(record.read_text())) if record.exists() else set()
    expected, handled = expected_dags(), set()
    pools: list[str] = []
    parent, deadline = os.getppid(), time.monotonic() + TIMEOUT_S
    with httpx.Client(base_url=base, timeout=10) as client:
        while time.monotonic() < deadline and os.getppid() == parent and not expected <= handled:
            time.sleep(2)
            try:
                if "Authorization" not in client.headers:
                    r = client.post("/auth/token", json={"username": login[0], "password": login[1]})
                    r.raise_for_status()
                    client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
                if not pools:
                    # Before any DAG is unpaused: a task in a pool that does not exist is never scheduled.
                    pools = ensure_pools(client)
                    print(f"unpause_pipeline: pools {', '.join(pools)} ready", flush=True)
                r = client.get("/api/v2/dags", params={"limit": 1000})
                r.raise_for_status()
                for dag in r.json()["dags"]:
                    dag_id = dag["dag_id"]
                    if dag["timetable_summary"] is not None and dag_id not in done:
                        client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
                        done.add(dag_id)
                        record.write_text(json.dumps(sorted(done)) + "\n")
                        print(f"unpause_pipeline: unpaused {dag_id}", flush=True)
                    handled.add(dag_id)
            except httpx.HTTPError:
                continue  # not up yet (or restarting): try again
    return 0


if __name__ == "__main__":
    # A background job of a non-interactive shell starts with SIGINT ignored: Ctrl-C must stop this one too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(run(sys.argv[1]))
    except KeyboardInterrupt:
        sys.exit(130)
