"""point-in-time sub-ledger: every change of an invoice's open balance or status is an immutable, dated movement

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Issue 19. ``invoices`` keeps the current balances (materialised, fast); ``invoice_movements`` keeps how they came
to be, so that a balance, an aging or a KPI for a past date is a sum over movements, never a snapshot that happened
to be taken.

**Written by the database, in the statement that changes the invoice.** Triggers on ``invoices`` insert the
movements (an INSERT: the invoice's whole open balance, dated its invoice date; an UPDATE that changes
``open_balance`` or ``status``: the signed change and the new status), so no code path - the ledger's own or a raw
``UPDATE`` - can move a balance without leaving a movement. Why it moved (kind, business date, document) is declared
by the ledger's code for its transaction (``writeoffs.subledger.movement``): on PostgreSQL as transaction-local
settings, on SQLite as the one row of ``invoice_movement_context`` (SQLite has no session variables and a schema
trigger cannot read a temporary table). An undeclared change is recorded as kind ``direct`` dated the day it was
made. The recorded time is the database's clock (UTC), never the caller's.

PostgreSQL fires the triggers once per *statement* (transition tables: one set-wise ``INSERT ... SELECT`` per
merge, posting chunk or charge-off run, no per-row work), and they are ``ENABLE ALWAYS``: they fire in the bulk
path's ``session_replication_role = replica`` too (``writeoffs.db.bulk`` only refuses tables whose triggers that
mode would silence).

**Immutable.** A movement is never updated or deleted (PostgreSQL: row and TRUNCATE guards; SQLite: UPDATE, DELETE
and REPLACE guards), the same approach as the journal's. The runtime role may only INSERT and SELECT
(``writeoffs.db.roles``).

**Backfill.** Every existing invoice gets one ``opening`` movement: its current open balance and status, dated its
invoice date. The ledger kept no history before this migration, so for earlier dates the answers are the balances
it held when the history began (what the current-balance fallback answered before, now stated per movement).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from writeoffs.db.money import ExactMoney

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_IMMUTABLE = "ledger: invoice movements are immutable (a correction is a new movement)"
_COLUMNS = "invoice_id, effective_date, recorded_at, kind, balance_change, status, ref"

# --- PostgreSQL -----------------------------------------------------------------------------------------------------
_PG_NOW = "to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
PG_UP = [
    f"""CREATE FUNCTION ledger_invoice_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      k text := COALESCE(NULLIF(current_setting('writeoffs.movement_kind', true), ''), 'direct');
      d date := NULLIF(current_setting('writeoffs.movement_date', true), '')::date;
      r text := NULLIF(current_setting('writeoffs.movement_ref', true), '');
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO invoice_movements ({_COLUMNS})
        SELECT n.id, n.invoice_date, {_PG_NOW}, k, n.open_balance, n.status, r FROM moved_new n;
      ELSE
        INSERT INTO invoice_movements ({_COLUMNS})
        SELECT n.id, COALESCE(d, CURRENT_DATE), {_PG_NOW}, k, n.open_balance - o.open_balance, n.status, r
        FROM moved_new n JOIN moved_old o ON o.id = n.id
        WHERE n.open_balance <> o.open_balance OR n.status <> o.status;
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_invoices_moved_insert AFTER INSERT ON invoices REFERENCING NEW TABLE AS moved_new
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_invoice_moved()""",
    """CREATE TRIGGER trg_invoices_moved_update AFTER UPDATE ON invoices
       REFERENCING OLD TABLE AS moved_old NEW TABLE AS moved_new
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_invoice_moved()""",
    "ALTER TABLE invoices ENABLE ALWAYS TRIGGER trg_invoices_moved_insert",
    "ALTER TABLE invoices ENABLE ALWAYS TRIGGER trg_invoices_moved_update",
    f"""CREATE FUNCTION ledger_movements_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '{_IMMUTABLE}' USING ERRCODE = '23514';
    END $$""",
    """CREATE TRIGGER trg_movements_guard BEFORE UPDATE OR DELETE ON invoice_movements
       FOR EACH ROW EXECUTE FUNCTION ledger_movements_guard()""",
    """CREATE TRIGGER trg_movements_no_truncate BEFORE TRUNCATE ON invoice_movements
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_movements_guard()""",
    # Immutable in the bulk path's replica mode too (and the bulk path may then rebuild this table's indexes).
    "ALTER TABLE invoice_movements ENABLE ALWAYS TRIGGER trg_movements_guard",
    "ALTER TABLE invoice_movements ENABLE ALWAYS TRIGGER trg_movements_no_truncate",
    # Pinned like every guard (0011): a temporary table must not stand in for invoice_movements.
    """DO $$ BEGIN
      EXECUTE format('ALTER FUNCTION ledger_invoice_moved() SET search_path = %I, pg_temp', current_schema());
      EXECUTE format('ALTER FUNCTION ledger_movements_guard() SET search_path = %I, pg_temp', current_schema());
    END $$""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS trg_movements_no_truncate ON invoice_movements",
    "DROP TRIGGER IF EXISTS trg_movements_guard ON invoice_movements",
    "DROP TRIGGER IF EXISTS trg_invoices_moved_update ON invoices",
    "DROP TRIGGER IF EXISTS trg_invoices_moved_insert ON invoices",
    "DROP FUNCTION IF EXISTS ledger_movements_guard()",
    "DROP FUNCTION IF EXISTS ledger_invoice_moved()",
]

# --- SQLite ---------------------------------------------------------------------------------------------------------
#: The declared context of the current transaction (at most one row; SQLite has one writer at a time).
CONTEXT_TABLE = "invoice_movement_context"
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"
_CTX = f"(SELECT {{col}} FROM {CONTEXT_TABLE} LIMIT 1)"


def _raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


SQLITE_UP = [
    f"""CREATE TABLE {CONTEXT_TABLE} (
        kind VARCHAR(16) NOT NULL, effective_date DATE NOT NULL, ref VARCHAR(200))""",
    f"""CREATE TRIGGER trg_invoices_moved_insert AFTER INSERT ON invoices
        BEGIN
          INSERT INTO invoice_movements ({_COLUMNS})
          VALUES (NEW.id, NEW.invoice_date, {_SQLITE_NOW}, COALESCE({_CTX.format(col="kind")}, 'direct'),
                  NEW.open_balance, NEW.status, {_CTX.format(col="ref")});
        END""",
    f"""CREATE TRIGGER trg_invoices_moved_update AFTER UPDATE OF open_balance, status ON invoices
        WHEN OLD.open_balance IS NOT NEW.open_balance OR OLD.status IS NOT NEW.status
        BEGIN
          INSERT INTO invoice_movements ({_COLUMNS})
          VALUES (NEW.id, COALESCE({_CTX.format(col="effective_date")}, date('now')), {_SQLITE_NOW},
                  COALESCE({_CTX.format(col="kind")}, 'direct'), NEW.open_balance - OLD.open_balance, NEW.status,
                  {_CTX.format(col="ref")});
        END""",
    f"CREATE TRIGGER trg_movements_no_update BEFORE UPDATE ON invoice_movements {_raise(_IMMUTABLE)}",
    f"CREATE TRIGGER trg_movements_no_delete BEFORE DELETE ON invoice_movements {_raise(_IMMUTABLE)}",
    # REPLACE deletes the row in the way without firing DELETE triggers (see 0009): refuse a colliding insert.
    f"""CREATE TRIGGER trg_movements_no_collision BEFORE INSERT ON invoice_movements
        WHEN EXISTS (SELECT 1 FROM invoice_movements o WHERE o.id = NEW.id)
        {_raise(_IMMUTABLE)}""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS trg_movements_no_collision",
    "DROP TRIGGER IF EXISTS trg_movements_no_delete",
    "DROP TRIGGER IF EXISTS trg_movements_no_update",
    "DROP TRIGGER IF EXISTS trg_invoices_moved_update",
    "DROP TRIGGER IF EXISTS trg_invoices_moved_insert",
    f"DROP TABLE IF EXISTS {CONTEXT_TABLE}",
]

_BACKFILL = f"""INSERT INTO invoice_movements ({_COLUMNS})
    SELECT id, invoice_date, {{now}}, 'opening', open_balance, status, 'migration 0013' FROM invoices"""


def upgrade() -> None:
    bind = op.get_bind()
    ident = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "invoice_movements",
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", ident, nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("balance_change", ExactMoney(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("ref", sa.String(200), nullable=True),
        sa.CheckConstraint(
            "kind IN ('opening', 'ingest', 'charge_off', 'writeoff', 'recovery', 'reversal', 'reversal_cleared', "
            "'direct')",
            name="ck_invoice_movements_kind",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_movements"),
    )
    # The backfill before the indexes and triggers: one pass, no index maintenance per row.
    pg = bind.dialect.name == "postgresql"
    op.execute(sa.text(_BACKFILL.format(now=_PG_NOW if pg else _SQLITE_NOW)))
    op.create_index(
        "ix_invoice_movements_invoice_id_effective_date", "invoice_movements", ["invoice_id", "effective_date"]
    )
    op.create_index("ix_invoice_movements_effective_date", "invoice_movements", ["effective_date"])
    for stmt in PG_UP if pg else SQLITE_UP:
        op.execute(sa.text(stmt))


def downgrade() -> None:
    bind = op.get_bind()
    for stmt in PG_DOWN if bind.dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(sa.text(stmt))
    op.drop_index("ix_invoice_movements_effective_date", table_name="invoice_movements")
    op.drop_index("ix_invoice_movements_invoice_id_effective_date", table_name="invoice_movements")
    op.drop_table("invoice_movements")
