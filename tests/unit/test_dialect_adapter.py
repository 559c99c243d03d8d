"""One module alone tells SQLite from PostgreSQL (``writeoffs.db.dialect``): this fails on any other module under
``include/``, ``plugins/`` or ``dags/`` that reads a dialect's or backend's name, compares something with a dialect
name, or imports a SQLAlchemy dialect package. Migrations are history and keep their own branches."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Date, create_engine, literal, select

from writeoffs.db import dialect

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "include/writeoffs/db/dialect.py"
FORBIDDEN = {
    "reads a dialect's name": re.compile(r"\.dialect\.name\b|\bdialect\.name\b|get_backend_name\("),
    "compares with a dialect name": re.compile(r"""(==|!=|\bin\b)\s*[(\[{]?\s*["'](postgresql|sqlite)["']"""),
    "compares a dialect name": re.compile(r"""["'](postgresql|sqlite)["']\s*(==|!=)"""),
    "imports a SQLAlchemy dialect": re.compile(r"sqlalchemy\.dialects|from sqlalchemy import dialects"),
}


def _modules() -> list[Path]:
    out = []
    for top in ("include", "plugins", "dags"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ADAPTER or "migrations" in path.parts:
                continue
            out.append(path)
    return out


def test_no_module_but_the_adapter_knows_the_dialect():
    found = []
    for path in _modules():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()[:100]}")
    assert not found, "ask writeoffs.db.dialect instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'if conn.dialect.name == "postgresql":',
        "pg = engine.dialect.name == 'postgresql'",
        'if full.get_backend_name() == "sqlite":',
        'day = "CAST(:d AS DATE)" if dialect == "postgresql" else ":d"',
        "from sqlalchemy.dialects import postgresql",
        "from sqlalchemy.dialects.sqlite import insert",
        'keep = s.dialect in ("sqlite",)',
    ],
)
def test_the_scan_catches_each_way_of_knowing(line):
    assert any(p.search(line) for p in FORBIDDEN.values()), line


def test_unknown_databases_are_refused():
    with pytest.raises(dialect.UnsupportedDatabase, match="mysql"):
        dialect.of("mysql://u@h/db")
    with pytest.raises(dialect.UnsupportedDatabase):
        dialect.of("oracle")
    with pytest.raises(dialect.UnsupportedDatabase):
        dialect.of(object())


def test_each_bind_resolves_to_its_dialect():
    engine = create_engine("sqlite://")
    assert dialect.of(engine) is dialect.SQLITE
    with engine.connect() as conn:
        assert dialect.of(conn) is dialect.SQLITE
        assert dialect.of(conn.dialect) is dialect.SQLITE
        assert conn.execute(select(dialect.SQLITE.days_between(date(2026, 3, 1), "2026-02-01"))).scalar() == 28
    assert dialect.of("postgresql+psycopg://u@h/db") is dialect.POSTGRESQL
    assert dialect.of(dialect.POSTGRESQL) is dialect.POSTGRESQL


def test_fragments_differ_where_the_databases_do():
    assert dialect.POSTGRESQL.date(":d") == "CAST(:d AS DATE)" and dialect.SQLITE.date(":d") == ":d"
    assert dialect.POSTGRESQL.temp("t") == "pg_temp.t" and dialect.SQLITE.temp("t") == "temp.t"
    assert dialect.POSTGRESQL.days_text("i.due_date") == "(CAST(:d AS DATE) - i.due_date)"


def test_an_sqlite_too_old_for_the_ledger_sql_is_refused_with_what_to_do():
    with pytest.raises(
        dialect.UnsupportedDatabase, match=r"needs SQLite 3\.39\.0 or later; this Python links SQLite 3\.38\.5"
    ):
        dialect.check_sqlite((3, 38, 5))
    dialect.check_sqlite((3, 39, 0))
    dialect.check_sqlite()  # the SQLite this Python links: the ledger's SQL runs on it (IS DISTINCT FROM)
    with create_engine("sqlite://").connect() as conn:
        assert conn.exec_driver_sql("SELECT 1 IS DISTINCT FROM NULL, NULL IS DISTINCT FROM NULL").one() == (1, 0)


def test_a_statement_with_money_still_prints_without_a_database():
    """``str(statement)`` compiles with SQLAlchemy's generic dialect: money columns must not refuse it (logs, tests)."""
    from writeoffs.accounting.chart import posted_lines

    p = posted_lines("allowance")
    text_of = str(select(p.l.c.credit - p.l.c.debit).select_from(p.join))
    assert "JOIN journal_entries AS e" in text_of and "a.role = :role_1" in text_of


def test_the_ledger_engine_refuses_an_unknown_database_and_an_old_sqlite(tmp_path, monkeypatch):
    """Both refusals happen where every ledger engine is made (``db.engine.make_engine``), before any statement."""
    import sqlite3

    from writeoffs.db.engine import make_engine

    with pytest.raises(dialect.UnsupportedDatabase, match="mysql"):
        make_engine("mysql://u@127.0.0.1/ledger")
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 38, 5))
    with pytest.raises(dialect.UnsupportedDatabase, match=r"needs SQLite 3\.39\.0 or later"):
        make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")


def test_days_apart_and_days_between_agree_on_sqlite():
    with create_engine("sqlite://").connect() as conn:
        apart = dialect.SQLITE.days_apart(literal(date(2026, 2, 1), Date), literal(date(2026, 3, 1), Date))
        assert conn.execute(select(apart)).scalar() == 28
