"""A real Airflow 3 deployment for integration tests: api-server + scheduler + dag-processor on free ports.

``start_airflow(...)`` builds a temporary AIRFLOW_HOME (SQLite metadata DB, LocalExecutor with 4 slots, a
DAGs folder holding only the DAG files under test, SimpleAuthManager users with known passwords), starts the
components and waits until the API answers and the DAGs are parsed. ``AirflowServer`` then hands out bearer
tokens per user (``POST /auth/token``) and small REST helpers. Use it from a module- or session-scoped fixture:
start-up costs ~30 s on a 2-core machine, so tests share one instance.

The triggerer is not started: Airflow 3.3 parks Human-in-the-loop tasks in ``awaiting_input`` and the scheduler
resolves timeouts, so the approval path needs no trigger. Pass ``triggerer=True`` for DAGs that defer.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from writeoffs.private_files import write_private

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

#: Users of the demo/test deployment (name -> SimpleAuthManager role); approvers need role "user" to answer.
DEFAULT_USERS: dict[str, str] = {
    "admin": "admin",
    "ar_manager": "user",
    "controller": "user",
    "cfo": "user",
    "preparer": "user",
    "outsider": "user",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AirflowServer:
    base_url: str
    home: Path
    passwords: dict[str, str]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    # -- auth
    def token(self, user: str) -> str:
        if user not in self._tokens:
            r = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": user, "password": self.passwords[user]},
                timeout=30,
            )
            r.raise_for_status()
            self._tokens[user] = r.json()["access_token"]
        return self._tokens[user]

    def client(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=30,
        )

    # -- REST helpers
    def trigger(self, dag_id: str, run_id: str, conf: Mapping[str, Any] | None = None, *, user: str = "admin") -> dict:
        """Trigger a run as ``user`` (the run's triggering user is that authenticated identity)."""
        with self.client(user) as c:
            r = c.post(f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf or {}})
            r.raise_for_status()
            return r.json()

    def run_state(self, dag_id: str, run_id: str) -> str:
        with self.client() as c:
            r = c.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            r.raise_for_status()
            return str(r.json()["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        with self.client() as c:
            r = c.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
            r.raise_for_status()
            return {(t["task_id"], t["map_index"]): t["state"] for t in r.json()["task_instances"]}

    def wait_for(self, predicate, *, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value {last!r}\n{self.log_tail()}")

    def wait_run(self, dag_id: str, run_id: str, *, timeout: float = 180) -> str:
        return self.wait_for(
            lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
            timeout=timeout,
            what=f"run {run_id} to finish",
        )

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in self.procs:
            path = self.home / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        with self.client() as c:
            r = c.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"map_index": map_index},
                headers={"Accept": "text/plain"},
            )
            return r.text

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()


def write_passwords(home: Path, users: Iterable[str]) -> dict[str, str]:
    """Random SimpleAuthManager passwords in ``home/passwords.json`` (mode 0600); returns them."""
    passwords = {u: secrets.token_urlsafe(16) for u in users}
    write_private(home / "passwords.json", json.dumps(passwords))
    return passwords


def start_airflow(
    *,
    dag_files: Iterable[Path],
    env: Mapping[str, str] | None = None,
    users: Mapping[str, str] = DEFAULT_USERS,
    home: Path | None = None,
    triggerer: bool = False,
    startup_timeout: float = 240,
) -> AirflowServer:
    """Start a private Airflow; the caller must ``stop()`` it (use a fixture with ``yield``)."""
    home = home or Path(tempfile.mkdtemp(prefix="wo-airflow-"))
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    dag_ids = []
    for f in dag_files:
        shutil.copy(f, dags / f.name)
        dag_ids.append(f.stem)
    passwords = write_passwords(home, users)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        # `airflow` subcommands spawn further `airflow` processes: the venv must come first on PATH.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in users.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # Fast feedback for tests: HITL timeouts are swept every second, new DAG files parsed quickly.
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **(env or {}),
    }
    server = AirflowServer(base_url=base_url, home=home, passwords=passwords, env=full_env)
    migrate = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"], env=full_env, capture_output=True, text=True, timeout=600
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
    components = [["api-server"], ["scheduler"], ["dag-processor"]] + ([["triggerer"]] if triggerer else [])
    try:
        for args in components:
            log = (home / f"{args[0]}.log").open("w")
            server.procs[args[0]] = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *args],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() ends the component and its children only
                cwd=home,
            )

        def api_up() -> bool:
            for name, proc in server.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{server.log_tail()}")
            try:
                return httpx.get(f"{base_url}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        server.wait_for(api_up, timeout=startup_timeout, interval=1, what="the API server")

        def dags_parsed() -> bool:
            with server.client() as c:
                r = c.get("/dags", params={"limit": 100})
                return r.status_code == 200 and {d["dag_id"] for d in r.json()["dags"]} >= set(dag_ids)

        server.wait_for(dags_parsed, timeout=startup_timeout, interval=1, what=f"DAGs {dag_ids} to be parsed")
    except BaseException:
        server.stop()
        raise
    return server
