"""Run Alembic migrations programmatically (the CLI ``alembic`` uses the same scripts via ``alembic.ini``)."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData

SCRIPTS = Path(__file__).with_name("migrations")

#: Modules that define tables on the shared ``writeoffs.db.schema.metadata`` besides ``schema`` itself. Listed here
#: so that autogenerate and ``alembic check`` compare against every table the migrations create, not just some.
TABLE_MODULES: tuple[str, ...] = ("writeoffs.ingest.tables",)


def full_metadata() -> MetaData:
    """The shared metadata with every table module imported."""
    from writeoffs.db.schema import metadata

    for module in TABLE_MODULES:
        importlib.import_module(module)
    return metadata


#: Indexes that exist on SQLite only (migration 0005): the staging checks' correlated lookups, which PostgreSQL plans
#: as hash joins but SQLite runs as nested loops. They are not in the metadata, so comparisons must skip them.
SQLITE_ONLY_INDEX_PREFIX = "ixsqlite_"
#: Tables that exist on SQLite only (migration 0013: the movement context its triggers read, see writeoffs.subledger).
SQLITE_ONLY_TABLES = frozenset({"invoice_movement_context"})


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic ``include_object`` hook: leave the SQLite-only helper indexes out of autogenerate comparisons."""
    if type_ == "table" and reflected and name in SQLITE_ONLY_TABLES:
        return False
    return not (type_ == "index" and reflected and (name or "").startswith(SQLITE_ONLY_INDEX_PREFIX))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option(
        "sqlalchemy.url",
        engine.url.render_as_string(hide_password=False).replace("%", "%%"),
    )
    cfg.attributes["engine"] = engine
    return cfg


@functools.cache
def head_revision() -> str | None:
    """The newest migration in this code base (what an up-to-date ledger's ``alembic_version`` holds)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(SCRIPTS)).get_current_head()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)
