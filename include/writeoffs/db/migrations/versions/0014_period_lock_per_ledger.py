"""fiscal-period guard: its advisory lock is per ledger (schema), not per database

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

The guard of 0009 serialises writers of one entity's periods with an advisory lock keyed by the entity code alone.
Advisory locks are database-wide, so two ledgers in different schemas of one database (tenants, tests running in
parallel) waited for each other, and two that added periods for two entities in opposite orders deadlocked (seen in
the suite). The key now includes the ledger's schema; the rule, message and error code are those of 0009. As 0011
requires, the replaced function's ``search_path`` is pinned again. ``tests/integration/test_ledger_locks.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_BODY = """CREATE OR REPLACE FUNCTION ledger_fp_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE other varchar;
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'closed' THEN
        RAISE EXCEPTION 'ledger: fiscal period % of entity % is closed; it cannot be re-opened, changed, replaced or deleted',
          OLD.period, OLD.entity_code USING ERRCODE = '23514';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      -- Serialise period writers per entity: the overlap look-up below then sees the other's committed rows.
      PERFORM pg_advisory_xact_lock({key}, hashtext(NEW.entity_code));
      SELECT p.period INTO other FROM fiscal_periods p
       WHERE p.entity_code = NEW.entity_code AND p.period <> NEW.period
         AND (TG_OP = 'INSERT' OR NOT (p.entity_code = OLD.entity_code AND p.period = OLD.period))
         AND p.start_date <= NEW.end_date AND NEW.start_date <= p.end_date
       LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'ledger: fiscal periods of an entity may not overlap (or replace one another): % % overlaps %',
          NEW.entity_code, NEW.period, other USING ERRCODE = '23514';
      END IF;
      RETURN NEW;
    END $$"""
_PIN = """DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION ledger_fp_guard() SET search_path = %I, pg_temp', current_schema());
END $$"""


def _replace(key: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(_BODY.format(key=key)))
        op.execute(sa.text(_PIN))


def upgrade() -> None:
    _replace("hashtext('writeoffs.fiscal_periods.' || current_schema())")


def downgrade() -> None:
    _replace("hashtext('writeoffs.fiscal_periods')")
