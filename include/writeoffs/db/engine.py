"""Engines for the ledger database: SQLite (embedded default) or PostgreSQL (production).

The URL comes from, in order: the argument, ``WRITEOFFS_LEDGER_URL``, else an SQLite file under
``WRITEOFFS_DATA_DIR`` (default ``./.data``). ``postgresql://`` URLs are normalised to the psycopg 3 driver.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from writeoffs.db import dialect
from writeoffs.errors import Unavailable, WriteoffError


def data_dir() -> Path:
    path = Path(os.environ.get("WRITEOFFS_DATA_DIR", ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def ledger_url(url: str | None = None) -> str:
    if url:
        return normalise_url(url)
    env = os.environ.get("WRITEOFFS_LEDGER_URL")
    if env:
        return normalise_url(env)
    return f"sqlite:///{data_dir() / 'ledger.db'}"


def normalise_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def search_path_option(search_path: str) -> str:
    """The libpq ``options`` value that sets ``search_path`` — any valid one, e.g. PostgreSQL's default
    ``"$user", public``: libpq splits ``options`` at spaces unless they are escaped with a backslash."""
    escaped = search_path.replace("\\", "\\\\").replace(" ", "\\ ")
    return f"-csearch_path={escaped}"


def schema_url(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` as ``search_path``: the form to hand to another process (a CLI, an
    Airflow task) where ``make_engine(url, schema=...)`` cannot be called."""
    full = make_url(normalise_url(url)).update_query_dict({"options": search_path_option(schema)})
    return full.render_as_string(hide_password=False)


def make_engine(
    url: str | None = None,
    *,
    schema: str | None = None,
    audit_key: bytes | None = None,
    audit_checkpoint: Path | None = None,
    **kwargs: object,
) -> Engine:
    """Create an engine with the pragmas/options the ledger relies on.

    ``schema`` pins the PostgreSQL ``search_path`` (tests isolate each run in its own schema). ``audit_key`` (else
    the environment, ``writeoffs.audit_anchor``) keys the audit chain; ``audit_checkpoint`` is where its head is
    checkpointed (default: one file per ledger under ``$WRITEOFFS_DATA_DIR``).
    """
    from writeoffs.audit_anchor import bind, checkpoint_path, key_from_env

    full = make_url(ledger_url(url))
    if dialect.of(full).file_database:
        dialect.check_sqlite()
        if full.database and full.database != ":memory:":
            Path(full.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(full, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            # Foreign keys are off by default in SQLite; the ledger's integrity depends on them.
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    else:
        connect_args: dict[str, object] = {}
        if schema:
            connect_args["options"] = search_path_option(schema)
        engine = create_engine(full, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    key = audit_key if audit_key is not None else key_from_env()
    # The checkpoint belongs to the ledger: with ``schema=`` that is the schema's, as if reached through
    # schema_url(url, schema) (the same file either way); two ledgers in one database never share a file.
    ledger = full.update_query_dict({"options": search_path_option(schema)}) if schema else full
    return bind(engine, key=key, checkpoint=audit_checkpoint or checkpoint_path(ledger))


class LedgerNotInitialised(WriteoffError):
    """A command that reads or writes the ledger was pointed at a database that has no ledger schema."""


class LedgerUnreachable(LedgerNotInitialised, Unavailable):
    """The ledger database did not answer (down, refused, timed out): a retry may succeed."""


def open_ledger(url: str | None = None) -> Engine:
    """The engine of an *existing* ledger, for commands that need one: nothing is created (no SQLite file, no data
    directory); a missing or never-migrated database is one clear error."""
    target = url or os.environ.get("WRITEOFFS_LEDGER_URL")
    if not target:
        target = f"sqlite:///{Path(os.environ.get('WRITEOFFS_DATA_DIR', '.data')).resolve() / 'ledger.db'}"
    full = make_url(normalise_url(target))
    shown = full.render_as_string(hide_password=True)
    hint = "run `python -m writeoffs init-db` first"
    if dialect.of(full).file_database:
        if not full.database or full.database == ":memory:" or not Path(full.database).is_file():
            raise LedgerNotInitialised(f"no ledger at {shown}: {hint}")
    engine = make_engine(target)
    try:
        with engine.connect() as conn:
            ready = inspect(conn).has_table("alembic_version")
    except OperationalError as exc:
        engine.dispose()
        raise LedgerUnreachable(f"cannot reach the ledger at {shown}: {str(exc.orig).splitlines()[0][:200]}") from None
    if not ready:
        engine.dispose()
        raise LedgerNotInitialised(f"the database at {shown} has no ledger schema: {hint}")
    from writeoffs.db.migrate import head_revision

    with engine.connect() as conn:
        at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if at != head_revision():
        # Fail closed: code that reads a table a newer migration adds would stop mid-query with a driver error.
        engine.dispose()
        raise LedgerNotInitialised(
            f"the ledger at {shown} is at schema revision {at}, this code needs {head_revision()}:"
            " run `python -m writeoffs init-db` to upgrade it"
        )
    return engine


def consistent_reads(conn: Connection) -> Connection:
    """``conn`` for reads that must agree with each other (a report, a page, all the checks of a run): a read-only
    repeatable-read transaction on PostgreSQL, which never blocks writers and never sees half a posting. SQLite
    (single-machine deployments) keeps the connection as it is."""
    if dialect.of(conn).snapshots:
        return conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return conn
