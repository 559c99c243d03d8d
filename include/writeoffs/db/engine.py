"""Engines for the ledger database: SQLite (embedded default) or PostgreSQL (production).

The URL comes from, in order: the argument, ``WRITEOFFS_LEDGER_URL``, else an SQLite file under
``WRITEOFFS_DATA_DIR`` (default ``./.data``). ``postgresql://`` URLs are normalised to the psycopg 3 driver.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


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


def make_engine(url: str | None = None, *, schema: str | None = None, **kwargs: object) -> Engine:
    """Create an engine with the pragmas/options the ledger relies on.

    ``schema`` pins the PostgreSQL ``search_path`` (tests isolate each run in its own schema).
    """
    full = make_url(ledger_url(url))
    if full.get_backend_name() == "sqlite":
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

        return engine
    connect_args: dict[str, object] = {}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    return create_engine(full, connect_args=connect_args, pool_pre_ping=True, **kwargs)
