"""Shared fixtures.

Ledger tests run on both databases: SQLite (a file in tmp_path) and PostgreSQL (127.0.0.1:5432, trust auth,
database ``test``). Each PostgreSQL-using test gets its own schema (``search_path``), so parallel or repeated runs
never see each other's rows; the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration when first imported: isolate the test session's Airflow home (metadata DB,
# logs) from the developer's `make up` instance before anything imports airflow.
if not os.environ.get("WRITEOFFS_TEST_KEEP_AIRFLOW_HOME"):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="wo-airflow-home-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("WRITEOFFS_DATA_DIR", tempfile.mkdtemp(prefix="wo-data-"))

from writeoffs.db.engine import make_engine  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Business date used across tests (never ``today()``: tests must not depend on the calendar).
AS_OF = date(2026, 11, 24)


def pg_schema_url(schema: str) -> str:
    """A PostgreSQL URL whose connections use ``schema`` as search_path."""
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def ledger_url_of(engine: Engine) -> str:
    """The full URL (with password and schema options) to give to another process or to Airflow tasks."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Airflow's metadata DB (SQLite in the session's AIRFLOW_HOME), migrated once; needed by ``dag.test()``."""
    env = dict(os.environ)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def ledger_env(monkeypatch):
    """Point in-process Airflow tasks (``dag.test()``) at a test ledger: ``ledger_env(engine)``."""

    def apply(engine: Engine) -> str:
        url = ledger_url_of(engine)
        monkeypatch.setenv("WRITEOFFS_LEDGER_URL", url)
        monkeypatch.delenv("AIRFLOW_CONN_WRITEOFF_LEDGER", raising=False)
        return url

    return apply


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}. Start it (see .ci/run).")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(pg_admin: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test; dropped afterwards."""
    name = f"wt_{uuid.uuid4().hex[:12]}"
    with pg_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    yield name
    with pg_admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))


@pytest.fixture
def make_ledger(tmp_path, pg_admin: Engine) -> Iterator[Callable[[str], Engine]]:
    """Factory: ``make_ledger("sqlite" | "postgresql")`` returns a migrated, empty ledger engine."""
    created: list[tuple[Engine, str | None]] = []

    def factory(dialect: str) -> Engine:
        if dialect == "sqlite":
            engine = make_engine(f"sqlite:///{tmp_path / f'ledger_{len(created)}.db'}")
            schema = None
        elif dialect == "postgresql":
            schema = f"wt_{uuid.uuid4().hex[:12]}"
            with pg_admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            # The schema travels in the URL, so `ledger_url_of(engine)` can hand it to subprocesses and Airflow.
            engine = make_engine(pg_schema_url(schema))
        else:
            raise ValueError(dialect)
        upgrade(engine)
        created.append((engine, schema))
        return engine

    yield factory
    for engine, schema in created:
        engine.dispose()
        if schema:
            with pg_admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, make_ledger) -> Engine:
    """A migrated, empty ledger on each database in turn."""
    return make_ledger(request.param)


@pytest.fixture
def pg_ledger(make_ledger) -> Engine:
    """A migrated, empty ledger on PostgreSQL only (for behaviour only the server enforces)."""
    return make_ledger("postgresql")
