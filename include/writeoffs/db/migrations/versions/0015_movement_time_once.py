"""invoice movements: the recorded time is formatted once per statement, not once per movement row

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

0013's statement trigger on ``invoices`` wrote ``to_char(statement_timestamp() AT TIME ZONE 'UTC', ...)`` in the
select list of its ``INSERT ... SELECT``: evaluated for every row of the transition table. A first load writes a
million movements in one statement, and the formatting alone cost about 5 s of it (measured: the same million-row
``INSERT ... SELECT`` into a two-column table took 8.5 / 9.4 s with the expression and 3.5 / 4.3 s with a constant,
at load ~11; BENCHMARKS.md). ``statement_timestamp()`` is the same for every row of the statement, so the value is
computed once into a variable: the same recorded time, the same rows. Only the function body changes (PostgreSQL;
SQLite's row triggers are untouched); as 0011 requires, its ``search_path`` is pinned again.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_FUNCTION = "CREATE FUNCTION ledger_invoice_moved()"
_PIN = """DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION ledger_invoice_moved() SET search_path = %I, pg_temp', current_schema());
END $$"""


def _m0013():
    path = Path(__file__).with_name("0013_invoice_movements.py")
    spec = importlib.util.spec_from_file_location("_writeoffs_migration_0013", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _body_0013() -> str:
    """0013's definition (the downgrade restores it from there, and the upgrade derives from it: not a copy)."""
    m = _m0013()
    (stmt,) = (s for s in m.PG_UP if s.startswith(_FUNCTION))
    return stmt.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def body() -> str:
    """0013's function with the recorded time computed once, in a variable declared after the others."""
    now = _m0013()._PG_NOW
    old = _body_0013()
    ref = "r text := NULLIF(current_setting('writeoffs.movement_ref', true), '');"
    assert ref in old and old.count(f"{now}, k,") == 2, "0013's trigger body is not the one this migration rewrites"
    return old.replace(ref, f"{ref}\n      t varchar(32) := {now};", 1).replace(f"{now}, k,", "t, k,")


def _replace(stmt: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(stmt))
        op.execute(sa.text(_PIN))


def upgrade() -> None:
    _replace(body())


def downgrade() -> None:
    _replace(_body_0013())
