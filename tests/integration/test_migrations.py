"""Migrations go up, down to nothing, and up again on both databases, and land exactly on the SQLAlchemy metadata.

Run twice: through ``writeoffs.db.migrate`` (what the CLI's ``init-db`` and the DAGs use) and through the real
``alembic`` command line with ``alembic.ini`` (what an operator types), so both entry points stay working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text

from writeoffs.db import migrate
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.migrate import include_object
from writeoffs.db.schema import currencies
from writeoffs.money import MINOR_UNITS

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = Path(sys.executable).with_name("alembic")
#: Every table the migrations should create: the shared metadata with all table modules imported.
METADATA = migrate.full_metadata()
HEAD = ScriptDirectory(str(migrate.SCRIPTS)).get_current_head()


@dataclass
class Target:
    dialect: str
    url: str  # a URL that selects this test's own database/schema, usable from a subprocess
    engine: Engine


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> Iterator[Target]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
        engine = make_engine(url)
    else:
        schema = request.getfixturevalue("pg_schema")
        base = request.getfixturevalue("pg_admin").url.render_as_string(hide_password=False)
        # libpq "options" pins search_path, so the CLI migrates into the fresh schema and nowhere else.
        url = schema_url(base, schema)
        engine = make_engine(url)
    yield Target(request.param, url, engine)
    engine.dispose()


#: Triggers and trigger functions created by the migrations (0002, 0009, 0013, 0017), per dialect.
EXPECTED_GUARDS: dict[str, tuple[set[str], set[str]]] = {
    "sqlite": (
        {
            "trg_je_insert_pending",
            "trg_je_post_check",
            "trg_je_post_period",
            "trg_je_posted_no_update",
            "trg_je_posted_no_delete",
            "trg_jl_posted_no_insert",
            "trg_jl_posted_no_update",
            "trg_jl_posted_no_delete",
            "trg_audit_no_update",
            "trg_audit_no_delete",
            # 0009: REPLACE cannot rewrite protected rows; periods never overlap, closed stays closed
            "trg_je_no_collision",
            "trg_je_no_key_collision",
            "trg_jl_no_collision",
            "trg_jl_no_key_collision",
            "trg_audit_no_collision",
            "trg_fp_closed_no_replace",
            "trg_fp_no_overlap_insert",
            "trg_fp_no_overlap_update",
            "trg_fp_no_key_collision",
            "trg_fp_closed_no_update",
            "trg_fp_closed_no_delete",
            # 0013: invoice movements written by the database, immutable
            "trg_invoices_moved_insert",
            "trg_invoices_moved_update",
            "trg_movements_no_update",
            "trg_movements_no_delete",
            "trg_movements_no_collision",
            # 0017: attribute changes recorded by the database, immutable
            "trg_invoices_attributes_changed",
            "trg_attribute_changes_no_update",
            "trg_attribute_changes_no_delete",
            "trg_attribute_changes_no_collision",
        },
        set(),
    ),
    "postgresql": (
        {
            "trg_je_guard",
            "trg_jl_guard",
            "trg_jl_balanced",
            "trg_audit_guard",
            "trg_audit_no_truncate",
            "trg_je_no_truncate",
            "trg_jl_no_truncate",
            "trg_fp_guard",  # 0009
            "trg_invoices_moved_insert",  # 0013
            "trg_invoices_moved_update",
            "trg_movements_guard",
            "trg_movements_no_truncate",
            "trg_attribute_changes_guard",  # 0017
            "trg_attribute_changes_no_truncate",
        },
        {
            "ledger_je_guard",
            "ledger_jl_guard",
            "ledger_jl_balanced",
            "ledger_audit_guard",
            "ledger_fp_guard",
            "ledger_invoice_moved",
            "ledger_movements_guard",
            "ledger_attribute_changes_guard",  # 0017
        },
    ),
}


def objects(engine: Engine) -> dict[str, set[str]]:
    """Every schema object the ledger could leave behind, except Alembic's own version table."""
    with engine.connect() as conn:
        insp = inspect(conn)
        tables = set(insp.get_table_names()) - {"alembic_version"}
        views = set(insp.get_view_names())
        if conn.dialect.name == "sqlite":
            triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
            functions: set[str] = set()
            sequences: set[str] = set()
        else:
            triggers = set(
                conn.execute(
                    text(
                        "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                        "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
                    )
                ).scalars()
            )
            functions = set(
                conn.execute(
                    text("SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace")
                ).scalars()
            )
            sequences = set(insp.get_sequence_names())
    return {"tables": tables, "views": views, "triggers": triggers, "functions": functions, "sequences": sequences}


def metadata_diff(engine: Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        return compare_metadata(ctx, METADATA)


def assert_at_head(engine: Engine) -> None:
    found = objects(engine)
    sqlite_only = migrate.SQLITE_ONLY_TABLES if engine.dialect.name == "sqlite" else frozenset()
    assert found["tables"] == set(METADATA.tables) | sqlite_only
    # The integrity triggers are what the raw-SQL tests rely on: they must come back with every upgrade.
    triggers, functions = EXPECTED_GUARDS[engine.dialect.name]
    assert triggers <= found["triggers"] and functions <= found["functions"]
    assert metadata_diff(engine) == []
    with engine.connect() as conn:
        # downgrade deletes the reference data, upgrade inserts it again: exactly once, no duplicates
        assert conn.execute(select(func.count()).select_from(currencies)).scalar_one() == len(MINOR_UNITS)
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD


def assert_at_base(engine: Engine) -> None:
    assert objects(engine) == {k: set() for k in ("tables", "views", "triggers", "functions", "sequences")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 0


def test_roundtrip_programmatic(target: Target):
    migrate.upgrade(target.engine)
    assert_at_head(target.engine)
    migrate.downgrade(target.engine, "base")
    assert_at_base(target.engine)
    migrate.upgrade(target.engine)
    assert_at_head(target.engine)
    migrate.upgrade(target.engine)  # a second upgrade at head is a no-op
    assert_at_head(target.engine)


def alembic_cli(target: Target, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WRITEOFFS_LEDGER_URL"}  # only -x url may choose the DB
    proc = subprocess.run(
        [str(ALEMBIC), "-x", f"url={target.url}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"alembic {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_roundtrip_alembic_cli(target: Target):
    alembic_cli(target, "upgrade", "head")
    assert_at_head(target.engine)
    # `alembic check` autogenerates against env.py's target_metadata and fails on any difference.
    assert "No new upgrade operations detected" in alembic_cli(target, "check").stdout
    assert f"{HEAD} (head)" in alembic_cli(target, "current").stdout
    alembic_cli(target, "downgrade", "base")
    assert_at_base(target.engine)
    alembic_cli(target, "upgrade", "head")
    assert_at_head(target.engine)


def test_cli_migrates_only_the_selected_postgres_schema(pg_admin: Engine, pg_schema: str):
    """The search_path URL must not leak objects into ``public`` (where another team's tables may live)."""
    base = pg_admin.url.render_as_string(hide_password=False)
    target = Target("postgresql", schema_url(base, pg_schema), pg_admin)
    with pg_admin.connect() as conn:
        before = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    alembic_cli(target, "upgrade", "head")
    with pg_admin.connect() as conn:
        after = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
        mine = set(
            conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": pg_schema}).scalars()
        )
    assert after == before
    assert mine == set(METADATA.tables) | {"alembic_version"}
