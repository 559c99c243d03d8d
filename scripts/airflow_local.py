"""A real Airflow 3 deployment for integration tests: api-server + scheduler + dag-processor on free ports.

``start_airflow(...)`` builds a temporary AIRFLOW_HOME (SQLite metadata DB, LocalExecutor with 4 slots, a
DAGs folder holding only the DAG files under test, SimpleAuthManager users with known passwords), starts the
components and waits until the API answers and the DAGs are parsed. ``start_airflow(celery=Celery(...),
metadata_url="postgresql+psycopg2://...")`` runs the same deployment the way production scales out instead:
CeleryExecutor with a Redis broker, a PostgreSQL metadata database (Celery refuses SQLite) and ``workers``
separate ``airflow celery worker`` processes, each with its own Celery hostname and log-server port, consuming a
queue of their own (so two deployments sharing one Redis never take each other's tasks). Either way the project's
pools (``writeoffs_airflow.pools``) are created. ``AirflowServer`` then hands out bearer tokens per user
(``POST /auth/token``) and small REST helpers. Use it from a module- or session-scoped fixture:
start-up costs ~30 s on a 2-core machine, so tests share one instance.

The triggerer is not started: Airflow 3.3 parks Human-in-the-loop tasks in ``awaiting_input`` and the scheduler
resolves timeouts, so the approval path needs no trigger. Pass ``triggerer=True`` for DAGs that defer.
"""

from __future__ import annotations

import json
import os
import re
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
from writeoffs_airflow.executors import EXECUTOR as LOCAL_EXECUTOR
from writeoffs_airflow.pools import ensure_pools

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


#: The production auth manager (``plugins/writeoffs_airflow/fab_auth.py``) and the FAB role of each SimpleAuthManager
#: role, so the same users can run under either.
FAB_AUTH_MANAGER = "writeoffs_airflow.fab_auth.WriteoffsFabAuthManager"
FAB_ROLES = {"admin": "Admin", "op": "Op", "user": "User", "viewer": "Viewer"}
_FAB_USERS_SCRIPT = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
with get_application_builder() as ab:
    for u in json.load(sys.stdin):
        if ab.sm.find_user(username=u["username"]) is None:
            role = ab.sm.find_role(u["role"])
            if role is None:
                sys.exit(f"no FAB role {u['role']!r}")
            if not ab.sm.add_user(username=u["username"], first_name=u["username"], last_name="-",
                                  email=u["username"] + "@example.com", role=role, password=u["password"]):
                sys.exit(f"could not create FAB user {u['username']!r}")
"""


def create_fab_users(env: Mapping[str, str], users: Mapping[str, str], passwords: Mapping[str, str]) -> None:
    """The deployment's users in FAB's user table, with their passwords and the FAB role of their role; one process
    (``airflow users create`` costs an interpreter start per user)."""
    rows = [{"username": u, "role": FAB_ROLES[r], "password": passwords[u]} for u, r in users.items()]
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", _FAB_USERS_SCRIPT],
        input=json.dumps(rows),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"creating the FAB users failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Celery:
    """How to run the CeleryExecutor: broker, number of worker processes and task slots per worker."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    workers: int = 2
    concurrency: int = 2
    #: A queue of this deployment's own: another deployment on the same broker never takes its tasks.
    queue: str = field(default_factory=lambda: f"writeoffs_{secrets.token_hex(4)}")

    def worker_names(self) -> list[str]:
        return [f"worker{n}" for n in range(1, self.workers + 1)]


@dataclass
class AirflowServer:
    base_url: str
    home: Path
    passwords: dict[str, str]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    celery: Celery | None = None

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
            event_hooks={"response": [self._explain_server_error]},
        )

    def _explain_server_error(self, response: httpx.Response) -> None:
        """On a 5xx, print what the api-server logged about it (its body only names an error ID to look for):
        pytest shows it with the failing test."""
        if response.status_code < 500:
            return
        response.read()
        found = re.search(r"look for ID (\w+)", response.text)
        path = self.home / "api-server.log"
        if found is None or not path.exists():
            return
        lines = path.read_text(errors="replace").splitlines()
        hits = [i for i, line in enumerate(lines) if found[1] in line]
        if hits:
            print(f"api-server log around error {found[1]}:", *lines[max(hits[0] - 5, 0) : hits[0] + 60], sep="\n")

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
        """Poll ``predicate`` until it returns something truthy. Predicates only read: a request that times out or a
        server error (the api-server shares the machine with the scheduler and the tasks; its SQLite metadata DB can
        be briefly locked) counts as "not yet", any other error is raised."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except httpx.TimeoutException as exc:
                last = f"{type(exc).__name__}, asked again"
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:
                    raise
                last = f"HTTP {exc.response.status_code}, asked again"
            else:
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


def celery_env(celery: Celery, metadata_url: str) -> dict[str, str]:
    """The CeleryExecutor's settings: broker, result backend on the metadata database, this deployment's queue."""
    backend = "db+" + metadata_url.replace("+psycopg2", "").replace("+psycopg", "")
    return {
        "AIRFLOW__CELERY__BROKER_URL": celery.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(celery.concurrency),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": celery.queue,
    }


def worker_tasks(home: Path, celery: Celery) -> dict[str, list[str]]:
    """Per Celery worker of the deployment in ``home``, the task instances it executed, as
    ``dag_id.task_id[map_index]``, read from the worker's log (``Executing workload in Celery: ... ti=...``)."""
    import re

    field_of = {name: re.compile(rf"\b{name}=(?:'([^']*)'|(-?\d+))") for name in ("dag_id", "task_id", "map_index")}
    found: dict[str, list[str]] = {}
    for name in celery.worker_names():
        found[name] = []
        for line in (home / f"{name}.log").read_text(errors="replace").splitlines():
            if "Executing workload in Celery" not in line or "ti=TaskInstanceDTO(" not in line:
                continue
            ti = line.split("ti=TaskInstanceDTO(", 1)[1]
            values = {k: m.group(1) or m.group(2) for k, rx in field_of.items() if (m := rx.search(ti))}
            index = "" if values.get("map_index") in (None, "-1") else f"[{values['map_index']}]"
            found[name].append(f"{values.get('dag_id')}.{values.get('task_id')}{index}")
    return found


def write_passwords(home: Path, users: Iterable[str]) -> dict[str, str]:
    """Random SimpleAuthManager passwords in ``home/passwords.json`` (mode 0600); returns them."""
    passwords = {u: secrets.token_urlsafe(16) for u in users}
    write_private(home / "passwords.json", json.dumps(passwords))
    return passwords


def sqlite_metadata_url(home: Path) -> str:
    """The SQLite metadata DB in ``home``, with Python's default 5 s wait for its write lock: a refused write is
    rolled back and answered HTTP 500 "Database error", which scripts/approve.py and the approval tests send again
    (a 60 s wait made a client time out instead)."""
    return f"sqlite:///{home / 'airflow.db'}"


def migrate_metadata(env: Mapping[str, str]) -> None:
    """``airflow db migrate`` with ``env`` (its AIRFLOW_HOME and metadata database)."""
    airflow = str(VENV_BIN / "airflow")
    done = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def migrated_metadata_db(home: Path) -> Path:
    """A freshly migrated SQLite metadata DB in ``home`` (``home/airflow.db``), to copy for each ``start_airflow``
    (``metadata_template``): ``airflow db migrate`` costs ~10 s of a 2-core machine every time it runs. Made with
    the same installation and Airflow environment variables cleared, as ``start_airflow`` clears them."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlite_metadata_url(home),
    }
    migrate_metadata(env)
    return home / "airflow.db"


def start_airflow(
    *,
    dag_files: Iterable[Path],
    env: Mapping[str, str] | None = None,
    users: Mapping[str, str] = DEFAULT_USERS,
    home: Path | None = None,
    triggerer: bool = False,
    startup_timeout: float = 240,
    metadata_url: str | None = None,
    celery: Celery | None = None,
    metadata_template: Path | None = None,
    auth: str = "simple",
) -> AirflowServer:
    """Start a private Airflow; the caller must ``stop()`` it (use a fixture with ``yield``).

    ``metadata_url``: Airflow's metadata database (default: SQLite in the home). ``celery``: run the CeleryExecutor
    with that many ``airflow celery worker`` processes instead of the LocalExecutor; needs a PostgreSQL
    ``metadata_url`` (it is also Celery's result backend). ``metadata_template``: a SQLite metadata DB that
    ``airflow db migrate`` of this same installation made and nothing has used since (see
    ``migrated_metadata_db``); the default SQLite DB starts as a copy of it instead of being migrated here.
    ``auth``: ``simple`` (SimpleAuthManager, passwords in the home) or ``fab`` (the production auth manager,
    :data:`FAB_AUTH_MANAGER`, the same users and passwords in FAB's user table)."""
    if auth not in ("simple", "fab"):
        raise ValueError(f"auth must be 'simple' or 'fab', not {auth!r}")
    if celery is not None and not (metadata_url or "").startswith("postgresql"):
        raise ValueError("the CeleryExecutor needs a PostgreSQL metadata database: pass metadata_url='postgresql...'")
    if metadata_template is not None and metadata_url is not None:
        raise ValueError("metadata_template replaces the default SQLite metadata DB: do not pass metadata_url too")
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
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if celery else LOCAL_EXECUTOR,
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
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url or sqlite_metadata_url(home),
        # Fast feedback for tests: HITL timeouts are swept every second, new DAG files parsed quickly.
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # The scheduler's and triggerer's log servers on ports of their own (Airflow's fixed 8793/8794 would collide
        # with any other deployment on the host, e.g. a second test process or `make up`).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        **(celery_env(celery, metadata_url) if celery and metadata_url else {}),
        **({"AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER} if auth == "fab" else {}),
        **(env or {}),
    }
    server = AirflowServer(base_url=base_url, home=home, passwords=passwords, env=full_env, celery=celery)
    if metadata_template is not None:
        shutil.copyfile(metadata_template, home / "airflow.db")
    else:
        migrate_metadata(full_env)
    if auth == "fab":
        if metadata_template is not None:
            migrate_metadata(full_env)  # FAB's own tables, if the template was made without them
        create_fab_users(full_env, users, passwords)
    components: list[tuple[str, list[str], dict[str, str]]] = [
        (args[0], args, {}) for args in [["api-server"], ["scheduler"], ["dag-processor"]]
    ]
    if triggerer:
        components.append(("triggerer", ["triggerer"], {}))
    for name in celery.worker_names() if celery else []:
        args = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", celery.queue]
        args += ["--concurrency", str(celery.concurrency), "--without-mingle", "--without-gossip"]
        # Each worker serves its task logs on a port of its own (two workers on one host would collide on 8793).
        components.append((name, args, {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}))
    try:
        for name, args, extra_env in components:
            log = (home / f"{name}.log").open("w")
            server.procs[name] = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *args],
                env={**full_env, **extra_env},
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
        # The project's pools (ledger_writes), as `make up` and compose create them: a task in a missing pool
        # would never be scheduled.
        admin = next(u for u, role in users.items() if role == "admin")

        def pools_created() -> bool:
            # Right after start the SQLite metadata DB can be busy for tens of seconds (the DAG processor's first
            # writes): wait_for asks again after a timeout or a server error; anything else (e.g. 403) is raised.
            with httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {server.token(admin)}"}, timeout=30
            ) as c:
                ensure_pools(c)
            return True

        server.wait_for(pools_created, timeout=startup_timeout, interval=1, what="the project's pools")

        def dags_parsed() -> bool:
            with server.client() as c:
                r = c.get("/dags", params={"limit": 100})
                return r.status_code == 200 and {d["dag_id"] for d in r.json()["dags"]} >= set(dag_ids)

        server.wait_for(dags_parsed, timeout=startup_timeout, interval=1, what=f"DAGs {dag_ids} to be parsed")
        if celery:
            server.wait_for(
                lambda: all("ready." in (home / f"{n}.log").read_text(errors="replace") for n in celery.worker_names()),
                timeout=startup_timeout,
                interval=1,
                what="the Celery workers to be ready",
            )
    except BaseException:
        server.stop()
        raise
    return server
