"""Shared fixtures.

Ledger tests run on both databases: SQLite (a file in tmp_path) and PostgreSQL (127.0.0.1:5432, trust auth,
database ``test``). Each PostgreSQL-using test gets its own schema (``search_path``), so parallel or repeated runs
never see each other's rows; the schema is dropped afterwards.

The migrations run once per session and dialect (``LedgerTemplates``); each test's ledger is a clone of that
result: the SQLite file's bytes copied, or, on PostgreSQL, the very SQL statements the migrations sent replayed in
the test's fresh schema. ``tests/integration/test_ledger_template.py`` proves a clone equals a ledger migrated from
scratch (tables, columns, constraints, indexes, triggers, functions, sequences, grants, rows).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, event, text

ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration when first imported: isolate the test session's Airflow home (metadata DB,
# logs) from the developer's `make up` instance before anything imports airflow.
# Once per test process: a test module that imports ``tests.conftest`` runs this file a second time (as another
# module), and a second home would leave in-process Airflow and ``airflow db migrate`` on different databases.
if not os.environ.get("WRITEOFFS_TEST_KEEP_AIRFLOW_HOME") and os.environ.get("_WO_TEST_HOME_PID") != str(os.getpid()):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="wo-airflow-home-")
    os.environ["_WO_TEST_HOME_PID"] = str(os.getpid())
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# Screenshots of the browser tests go where the README links them: the developer's $WRITEOFFS_DATA_DIR (.data by
# default), not the session's throw-away data dir set just below.
os.environ.setdefault(
    "WRITEOFFS_SCREENSHOT_DIR",
    str((Path(os.environ.get("WRITEOFFS_DATA_DIR") or ROOT / ".data") / "screenshots").resolve()),
)
os.environ.setdefault("WRITEOFFS_DATA_DIR", tempfile.mkdtemp(prefix="wo-data-"))
# The audit chain is keyed (fail closed without a key): one random key for the session, inherited by subprocesses
# and in-process Airflow tasks; each ledger checkpoints into its own file under WRITEOFFS_DATA_DIR.
os.environ.setdefault("WRITEOFFS_AUDIT_KEY", secrets.token_hex(32))
os.environ.pop("WRITEOFFS_AUDIT_KEY_FILE", None)
os.environ.pop("WRITEOFFS_AUDIT_CHECKPOINT", None)

from writeoffs.db.engine import make_engine, schema_url  # noqa: E402
from writeoffs.db.migrate import upgrade  # noqa: E402

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Business date used across tests (never ``today()``: tests must not depend on the calendar).
AS_OF = date(2026, 11, 24)


def pg_schema_url(schema: str) -> str:
    """A PostgreSQL URL whose connections use ``schema`` as search_path."""
    return schema_url(PG_URL, schema)


def ledger_url_of(engine: Engine) -> str:
    """The full URL (with password and schema options) to give to another process or to Airflow tasks."""
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def airflow_db(airflow_metadata_template: Path) -> str:
    """Airflow's metadata DB (SQLite in the session's AIRFLOW_HOME), migrated once; needed by ``dag.test()``.

    A copy of the session's migrated template when nothing has created the file yet (SQLite creates it on the first
    connection, so no connection can hold the old one); otherwise ``airflow db migrate`` brings it up to date."""
    from airflow.configuration import conf

    target = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    if conf.get("database", "sql_alchemy_conn") == f"sqlite:///{target}" and not target.exists():
        shutil.copyfile(airflow_metadata_template, target)
        return os.environ["AIRFLOW_HOME"]
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


@pytest.fixture(scope="session")
def airflow_metadata_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite Airflow metadata DB migrated once per session (``airflow db migrate`` costs ~10 s each time): the
    session's own (``airflow_db``), each real Airflow a test starts (``start_airflow(metadata_template=...)``) and a
    test's own Airflow home begin with a copy of this file. Nothing else ever opens it."""
    from scripts.airflow_local import migrated_metadata_db

    return migrated_metadata_db(tmp_path_factory.mktemp("airflow-metadata-template"))


@pytest.fixture
def ledger_env(monkeypatch):
    """Point in-process Airflow tasks (``dag.test()``) at a test ledger: ``ledger_env(engine)``."""

    def apply(engine: Engine) -> str:
        url = ledger_url_of(engine)
        monkeypatch.setenv("WRITEOFFS_LEDGER_URL", url)
        monkeypatch.delenv("AIRFLOW_CONN_WRITEOFF_LEDGER", raising=False)
        return url

    return apply


def reachable_pg_engine() -> Engine:
    """An engine on the test PostgreSQL server, or the test fails with one line saying it is down."""
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}. Start it (see .ci/run).")
    return engine


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = reachable_pg_engine()
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


#: Statements the migrations send only to look at the catalog (Alembic's "is there an alembic_version table?"):
#: they change nothing, so a replay leaves them out.
_CATALOG_READ = re.compile(r"^\s*SELECT\b(?!.*\b(INTO|nextval|setval)\b).*\bpg_catalog\.", re.IGNORECASE | re.DOTALL)


class LedgerTemplates:
    """Ledgers migrated once per session, cloned for each test (running the migrations costs ~0.4 s a ledger).

    - SQLite: the migrated template file is checkpointed and closed (no ``-wal`` left), then copied byte for byte.
    - PostgreSQL: the migrations run once in a scratch schema while every statement they send is recorded (with its
      parameters bound as literals); a clone is a fresh schema in which that same script runs, in one transaction,
      under the same ``search_path``. Same statements, same order, so the same tables, sequences, functions,
      triggers, grants and rows (``alembic_version``, currencies) result: ``test_ledger_template.py`` checks it.
    """

    def __init__(self, workdir: Path) -> None:
        self._pg_admin_engine: Engine | None = None  # on first PostgreSQL use: SQLite clones need no server
        self._workdir = workdir
        self._sqlite_file: Path | None = None
        self._pg_script: str | None = None

    def sqlite_file(self) -> Path:
        """The migrated template SQLite file (created on first use)."""
        if self._sqlite_file is None:
            path = self._workdir / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine)
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            engine.dispose()
            leftovers = [p for p in (Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists() and p.stat().st_size]
            assert not leftovers, f"the template ledger is not fully in its main file: {leftovers}"
            self._sqlite_file = path
        return self._sqlite_file

    @property
    def _pg_admin(self) -> Engine:
        if self._pg_admin_engine is None:
            self._pg_admin_engine = reachable_pg_engine()
        return self._pg_admin_engine

    def close(self) -> None:
        if self._pg_admin_engine is not None:
            self._pg_admin_engine.dispose()

    def pg_script(self) -> str:
        """The SQL the migrations send to an empty schema, as one script (recorded on first use)."""
        if self._pg_script is None:
            schema = f"wt_tpl_{uuid.uuid4().hex[:12]}"
            with self._pg_admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            engine = make_engine(pg_schema_url(schema))
            sent: list[tuple[str, object, bool]] = []

            def record(_conn, _cursor, statement, parameters, _context, executemany) -> None:
                sent.append((statement, parameters, executemany))

            event.listen(engine, "before_cursor_execute", record)
            try:
                upgrade(engine)
            finally:
                event.remove(engine, "before_cursor_execute", record)
                engine.dispose()
                with self._pg_admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            raw = self._pg_admin.raw_connection()
            try:
                # Bind the parameters client-side, exactly as the server would have received them.
                render = psycopg.ClientCursor(raw.driver_connection).mogrify
                script: list[str] = []
                for statement, parameters, executemany in sent:
                    if _CATALOG_READ.match(statement):
                        continue
                    if executemany:
                        script.extend(render(statement, row) for row in parameters)
                    else:
                        script.append(render(statement, parameters))
            finally:
                raw.close()
            self._pg_script = ";\n".join(script)
        return self._pg_script

    def sqlite(self, path: Path) -> Engine:
        """A migrated ledger at ``path``: a copy of the template file."""
        shutil.copyfile(self.sqlite_file(), path)
        return make_engine(f"sqlite:///{path}")

    def new_pg_schema(self, schema: str, engine: Engine | None = None) -> None:
        """Create the schema ``schema`` holding a migrated ledger: the recorded migration script replayed there."""
        script = self.pg_script()
        with (engine or self._pg_admin).begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            conn.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
            # No parameters: the script goes as it is (its `%` are literal), all statements in one round trip.
            conn.execution_options(no_parameters=True).exec_driver_sql(script)


class PgLedgerSchemas:
    """PostgreSQL ledger schemas made ahead of need and dropped after use, on background threads.

    Making a clone and dropping one cost the server ~0.1-0.3 s each; a test would wait for both. Here one thread
    keeps ``ahead`` clones ready (``take`` hands one out, or waits for the next, and orders a new one) and another
    drops the schemas tests are done with, while the tests run. Each thread has its own connection; the schemas are
    named like any test schema and no test sees another's. ``close`` drops the clones nobody took and waits for
    every drop, raising if one failed.
    """

    def __init__(self, templates: LedgerTemplates, ahead: int = 2) -> None:
        self._templates = templates
        self._ahead = ahead
        self._engine = make_engine(PG_URL, pool_size=2, max_overflow=0)
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-clone")
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-drop")
        self._ready: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []

    def _make(self) -> str:
        schema = f"wt_{uuid.uuid4().hex[:12]}"
        self._templates.new_pg_schema(schema, self._engine)
        return schema

    def _drop_now(self, schema: str) -> None:
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def take(self) -> str:
        """The name of a fresh schema holding a migrated ledger; the caller gives it back with ``drop``."""
        self._templates.pg_script()  # recorded on this thread, before any background work needs it
        if not self._ready:
            self._ready.append(self._maker.submit(self._make))
        schema = self._ready.popleft().result()
        while len(self._ready) < self._ahead:
            self._ready.append(self._maker.submit(self._make))
        return schema

    def drop(self, schema: str) -> None:
        """Drop ``schema`` (in the background; ``close`` waits for it)."""
        self._drops.append(self._dropper.submit(self._drop_now, schema))

    def close(self) -> None:
        self._maker.shutdown(wait=True, cancel_futures=True)
        for made in self._ready:
            if made.done() and not made.cancelled() and made.exception() is None:
                self.drop(made.result())
        self._dropper.shutdown(wait=True)
        self._engine.dispose()
        failed = [f.exception() for f in self._drops if f.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} test schema(s) could not be dropped: {failed[0]!r}")


@pytest.fixture(scope="session")
def ledger_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerTemplates]:
    templates = LedgerTemplates(tmp_path_factory.mktemp("ledger-template"))
    yield templates
    templates.close()


@pytest.fixture(scope="session")
def pg_ledger_schemas(ledger_templates: LedgerTemplates) -> Iterator[PgLedgerSchemas]:
    schemas = PgLedgerSchemas(ledger_templates)
    yield schemas
    schemas.close()


@pytest.fixture
def make_ledger(request, tmp_path, ledger_templates: LedgerTemplates) -> Iterator[Callable[[str], Engine]]:
    """Factory: ``make_ledger("sqlite" | "postgresql")`` returns a migrated, empty ledger engine (a template clone).
    A test that asks only for SQLite ledgers never touches the PostgreSQL server."""
    created: list[tuple[Engine, str | None]] = []
    pg_schemas: list[PgLedgerSchemas] = []

    def factory(dialect: str) -> Engine:
        if dialect == "sqlite":
            engine = ledger_templates.sqlite(tmp_path / f"ledger_{len(created)}.db")
            schema = None
        elif dialect == "postgresql":
            if not pg_schemas:
                pg_schemas.append(request.getfixturevalue("pg_ledger_schemas"))
            schema = pg_schemas[0].take()
            # The schema travels in the URL, so `ledger_url_of(engine)` can hand it to subprocesses and Airflow.
            engine = make_engine(pg_schema_url(schema))
        else:
            raise ValueError(dialect)
        created.append((engine, schema))
        return engine

    yield factory
    for engine, schema in created:
        engine.dispose()
        if schema:
            pg_schemas[0].drop(schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, make_ledger) -> Engine:
    """A migrated, empty ledger on each database in turn."""
    return make_ledger(request.param)


@pytest.fixture
def pg_ledger(make_ledger) -> Engine:
    """A migrated, empty ledger on PostgreSQL only (for behaviour only the server enforces)."""
    return make_ledger("postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers and tiers follow what a test uses.

    - ``postgres``: a PostgreSQL fixture, or a parameter (``ledger``, ``dialect``) set to ``postgresql``; tests that
      reach the server some other way carry the marker by hand. ``-m "not postgres"`` runs everything that needs no
      server, and passes with the server down.
    - ``tests/unit`` holds no test that creates a ledger or reaches a database or Airflow: collection stops.
    """
    from tests.tiers import needs_postgres, not_unit

    misplaced = []
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if needs_postgres(fixtures, getattr(getattr(item, "callspec", None), "params", {})):
            item.add_marker(pytest.mark.postgres)
        if wrong := not_unit(Path(item.path), fixtures):
            misplaced.append(f"{item.nodeid} uses {', '.join(sorted(wrong))}")
    if misplaced:
        listed = "\n".join(misplaced)
        raise pytest.UsageError(f"tests/unit needs no database; move these to tests/integration:\n{listed}")
