"""`make up` really starts Airflow: scripts/up.sh on a free port and a throw-away AIRFLOW_HOME.

Asserts the API answers, the demo logins work with their documented roles, the project's DAGs are listed, and that
the whole process group stops on Ctrl-C (SIGINT) without leaving processes behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
STARTUP_BUDGET_S = 90
DEMO_USERS = {"admin", "preparer", "ar_manager", "controller", "cfo"}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free API port whose derived log-server ports (PORT+713, PORT+714, see up.sh) are free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 714 < 65536 and all(_port_free(p) for p in (port, port + 713, port + 714)):
            return port
    raise RuntimeError("no free port found")


def http(method: str, url: str, *, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def expected_dag_ids() -> set[str]:
    # House rule: one DAG per file, file name = dag_id (tests/dags enforces it).
    return {p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_")}


def processes_of(airflow_home: Path) -> list[str]:
    """Live processes started for this AIRFLOW_HOME (components run in their own session, see supervise.py)."""
    marker = f"AIRFLOW_HOME={airflow_home}".encode() + b"\0"
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker in (proc_dir / "environ").read_bytes():
                cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc_dir.name} {cmdline}")
        except (OSError, IndexError):
            continue
    return found


def stop(proc: subprocess.Popen, airflow_home: Path) -> float:
    """Ctrl-C (SIGINT to the foreground group), escalating only if that fails; returns seconds to stop."""
    started = time.monotonic()
    for sig, grace in ((signal.SIGINT, 60), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not processes_of(airflow_home):
                return time.monotonic() - started
            time.sleep(0.5)
        print(f"[make up] still running after {sig.name}: {processes_of(airflow_home)}")
    return time.monotonic() - started


def test_make_up_serves_the_project(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "WRITEOFFS_"))}
    env.update(
        # what the Makefile's `up` target exports
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        WRITEOFFS_DATA_DIR=str(tmp_path / "data"),
        PORT=str(port),
    )
    log_path = tmp_path / "up.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["bash", "scripts/up.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    airflow_home = tmp_path / "airflow"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    try:
        ready_after = None
        while time.monotonic() - started < STARTUP_BUDGET_S:
            if proc.poll() is not None:
                pytest.fail(f"scripts/up.sh exited with {proc.returncode}:\n{log_tail()}")
            try:
                status, version = http("GET", f"{base}/api/v2/version")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = 0
            if status == 200:
                ready_after = time.monotonic() - started
                break
            time.sleep(1)
        assert ready_after is not None, f"/api/v2/version not 200 within {STARTUP_BUDGET_S}s:\n{log_tail()}"
        assert version["version"].startswith("3.")
        print(f"\n[make up] /api/v2/version answered 200 after {ready_after:.1f}s")

        # The documented logins (password = username) work; a wrong password does not.
        passwords = json.loads((tmp_path / "airflow" / "demo_passwords.json").read_text())
        assert set(passwords) == DEMO_USERS and all(passwords[u] == u for u in DEMO_USERS)
        status, body = http("POST", f"{base}/auth/token", body={"username": "admin", "password": "admin"})
        assert status == 201, status
        token = body["access_token"]
        assert http("POST", f"{base}/auth/token", body={"username": "admin", "password": "nope"})[0] == 401
        status, body = http("POST", f"{base}/auth/token", body={"username": "controller", "password": "controller"})
        assert status == 201
        approver = body["access_token"]
        # Approvers have the USER role: DAGs yes, connections (OP and above) no.
        assert http("GET", f"{base}/api/v2/dags", token=approver)[0] == 200
        assert http("GET", f"{base}/api/v2/connections", token=approver)[0] == 403
        assert http("GET", f"{base}/api/v2/connections", token=token)[0] == 200
        banner = log_path.read_text(errors="replace")
        assert f"Airflow UI:  http://localhost:{port}" in banner and "controller   / controller" in banner

        expected = expected_dag_ids()
        if not expected:
            pytest.skip(
                f"API up after {ready_after:.1f}s and logins OK; no DAG files in dags/ yet, listing not checked"
            )
        listed: set[str] = set()
        deadline = time.monotonic() + 120  # the DAG processor parses files after startup, one process on 2 cores
        while time.monotonic() < deadline:
            status, body = http("GET", f"{base}/api/v2/dags?limit=1000", token=token)
            assert status == 200
            listed = {d["dag_id"] for d in body["dags"]}
            if expected <= listed:
                break
            time.sleep(2)
        assert expected <= listed, f"DAGs not listed: {sorted(expected - listed)}\n{log_tail()}"
        if expected:
            print(f"[make up] {len(expected)} DAGs listed after {time.monotonic() - started:.1f}s: {sorted(expected)}")
    finally:
        stop_seconds = stop(proc, airflow_home)
        print(f"[make up] stopped {stop_seconds:.1f}s after Ctrl-C")
    assert proc.returncode == 0, f"up.sh exit status {proc.returncode} after Ctrl-C:\n{log_tail()}"
    assert processes_of(airflow_home) == [], "processes left behind after shutdown"
    assert stop_seconds < 60, "Ctrl-C alone did not stop Airflow (needed SIGTERM/SIGKILL)"
    if not expected:
        pytest.skip(f"API up after {ready_after:.1f}s, logins and shutdown OK; no DAG files in dags/ yet to look for")
