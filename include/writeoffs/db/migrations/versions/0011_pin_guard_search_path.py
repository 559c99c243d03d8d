"""ledger guard functions pin their search_path (PostgreSQL): a temporary table cannot stand in for a ledger table

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Issue 14. The runtime role may create temporary tables (the policy engine and validation use them), and PostgreSQL
looks up an unqualified table name in ``pg_temp`` *first*. The guard functions of 0002 and 0009 name their tables
unqualified, so a session could shadow ``fiscal_periods`` (every month open) or ``journal_lines`` (balanced lines)
with a temporary table and post into a closed month or post an unbalanced entry, with every trigger in place.

Each ``ledger_*`` function of the ledger's schema now runs with ``search_path = <that schema>, pg_temp`` (``pg_temp``
named last is searched last). The schema is read at run time (``current_schema()``), not written into this file, so
the same script pins the functions of whichever schema it migrates. A migration that adds a guard function must pin
it the same way (``tests/integration/test_pg_roles.py`` checks every function of the schema).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_EACH_GUARD = """DO $$
DECLARE f record;
BEGIN
  FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
            WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'ledger\\_%'
  LOOP
    EXECUTE {statement};
  END LOOP;
END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        pin = "format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f.sig, current_schema())"
        op.execute(sa.text(_EACH_GUARD.format(statement=pin)))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(_EACH_GUARD.format(statement="format('ALTER FUNCTION %s RESET search_path', f.sig)")))
