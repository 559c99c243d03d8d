"""The test ledgers are clones of a ledger migrated once per session (``conftest.LedgerTemplates``): prove that a
clone is the very ledger the migrations build from scratch, on both databases.

Compared: every relation (kind, persistence, owner, grants, options), column (type, nullability, default, identity,
collation), constraint, index, trigger, function (full definition, grants), sequence (parameters and state), the
schema's owner, grants and default privileges, comments, and every row of every table (``alembic_version``,
currencies, ...). On PostgreSQL the two schemas are also dumped with ``pg_dump`` and the dumps compared.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PG_URL, pg_schema_url
from sqlalchemy import Engine, text

from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import head_revision, upgrade

SCHEMA = "<schema>"

PG_CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, pg_get_userbyid(c.relowner), c.relacl::text,
               c.reloptions::text, c.relhastriggers, c.relrowsecurity
          FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1""",
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, numeric_precision,
               numeric_scale, is_nullable, column_default, is_identity, is_generated, collation_name
          FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 3""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), condeferrable, condeferred,
               convalidated
          FROM pg_constraint WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 2",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled, t.tgdeferrable, t.tginitdeferred
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               pg_get_userbyid(p.proowner), p.proacl::text, p.prosecdef, p.provolatile, p.proconfig::text
          FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace ORDER BY 1, 2""",
    "sequences": """
        SELECT sequencename, pg_get_serial_sequence(d.refobjid::regclass::text, a.attname), data_type, start_value,
               min_value, max_value, increment_by, cycle, cache_size, last_value
          FROM pg_sequences s
          LEFT JOIN pg_depend d ON d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
               AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE s.schemaname = current_schema() ORDER BY 1""",
    "schema": """
        SELECT pg_get_userbyid(n.nspowner), n.nspacl::text,
               (SELECT array_agg(a.defaclobjtype::text || ':' || a.defaclacl::text ORDER BY 1)
                  FROM pg_default_acl a WHERE a.defaclnamespace = n.oid)
          FROM pg_namespace n WHERE n.nspname = current_schema()""",
    "comments": """
        SELECT d.classoid::regclass::text, coalesce(c.relname, p.proname, t.tgname), d.objsubid, d.description
          FROM pg_description d
          LEFT JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
          LEFT JOIN pg_proc p ON d.classoid = 'pg_proc'::regclass AND p.oid = d.objoid
          LEFT JOIN pg_trigger t ON d.classoid = 'pg_trigger'::regclass AND t.oid = d.objoid
          LEFT JOIN pg_class tc ON tc.oid = t.tgrelid
         WHERE current_schema()::regnamespace IN (c.relnamespace, p.pronamespace, tc.relnamespace) ORDER BY 1, 2, 3""",
}


def _current_schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT current_schema()")).scalar_one()


def _rows(conn, tables: list[str]) -> dict[str, list[str]]:
    """Every row of every table, as sorted reprs (tables have no guaranteed order)."""
    return {t: sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{t}"'))) for t in tables}


def pg_fingerprint(engine: Engine) -> dict[str, object]:
    schema = _current_schema(engine)
    out: dict[str, object] = {}
    with engine.connect() as conn:
        for name, query in PG_CATALOG.items():
            out[name] = [tuple(str(v).replace(schema, SCHEMA) for v in row) for row in conn.execute(text(query))]
        tables = [r[0] for r in out["relations"] if r[1] in ("r", "p")]
        out["rows"] = _rows(conn, tables)
    return out


def sqlite_fingerprint(engine: Engine) -> dict[str, object]:
    out: dict[str, object] = {}
    with engine.connect() as conn:
        out["master"] = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).all()
        for pragma in ("user_version", "application_id", "page_size", "auto_vacuum", "encoding", "journal_mode"):
            out[pragma] = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
        tables = [r[1] for r in out["master"] if r[0] == "table"]
        out["rows"] = _rows(conn, tables)
    return out


@pytest.fixture
def scratch_ledger(tmp_path: Path, pg_schema: str) -> Callable[[str], Engine]:
    """A ledger built the slow way: an empty database (file or schema) and the migrations run on it."""
    engines: list[Engine] = []

    def build(dialect: str) -> Engine:
        url = f"sqlite:///{tmp_path / 'scratch.db'}" if dialect == "sqlite" else pg_schema_url(pg_schema)
        engine = make_engine(url)
        engines.append(engine)
        upgrade(engine)
        return engine

    yield build
    for engine in engines:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_cloned_ledger_equals_a_freshly_migrated_one(make_ledger, scratch_ledger, dialect: str) -> None:
    fingerprint = sqlite_fingerprint if dialect == "sqlite" else pg_fingerprint
    scratch, clone = scratch_ledger(dialect), make_ledger(dialect)
    expected, got = fingerprint(scratch), fingerprint(clone)
    for part in expected:
        assert got[part] == expected[part], part
    assert got == expected

    # The comparison sees what matters: the migrations' work is there, and one trigger less is a difference.
    flat = repr(expected)
    for name in ("trg_je_post_check", "journal_lines", "alembic_version", "stg_invoices"):
        assert name in flat, name
    rows = expected["rows"]
    assert rows["alembic_version"] == [f"('{head_revision()}',)"] and len(rows["currencies"]) > 100
    if dialect == "postgresql":
        assert {r[0] for r in expected["functions"]} >= {"ledger_je_guard", "ledger_jl_balanced"}
        assert any(r[2] == "u" for r in expected["relations"]), "the staging tables are UNLOGGED"
    with clone.begin() as conn:
        conn.execute(
            text(
                "DROP TRIGGER trg_audit_guard ON audit_log"
                if dialect == "postgresql"
                else "DROP TRIGGER trg_audit_no_update"
            )
        )
    assert fingerprint(clone) != expected


@pytest.mark.postgres  # it makes its PostgreSQL ledger in the body: no fixture says so
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_a_cloned_postgres_ledger_dumps_like_a_freshly_migrated_one(make_ledger, scratch_ledger) -> None:
    def dump(engine: Engine) -> str:
        schema = _current_schema(engine)
        url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        result = subprocess.run(
            ["pg_dump", "--dbname", url, "--schema", schema], capture_output=True, text=True, timeout=120, check=True
        )
        # pg_dump >= 15.14 fences the script with a random "restrict" key (lines \restrict, \unrestrict): not content.
        lines = [line for line in result.stdout.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]
        return "\n".join(lines).replace(schema, SCHEMA)

    expected, got = dump(scratch_ledger("postgresql")), dump(make_ledger("postgresql"))
    assert "CREATE TRIGGER trg_je_post_check" in expected and "COPY <schema>.currencies" in expected
    assert got == expected
