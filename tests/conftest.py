"""Shared fixtures.

Ledger tests run on both databases: SQLite (a file in tmp_path) and PostgreSQL (127.0.0.1:5432, trust auth,
database ``test``). Each PostgreSQL-using test gets its own schema (``search_path``), so parallel or repeated runs
never see each other's rows; the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from sqlalchemy import Engine, text

from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import upgrade

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Business date used across tests (never ``today()``: tests must not depend on the calendar).
AS_OF = date(2026, 11, 24)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = make_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - turn a connection failure into a clear test error
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
            engine = make_engine(PG_URL, schema=schema)
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
