"""balance checkpoints carry what the aging groups by; invoice attribute changes are recorded

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

The aging as of a past date, from a checkpoint, joined every invoice to the checkpoint's rows to learn each one's
entity, currency, customer and dates: at 1,000,000 invoices that join was most of its 4.2x the current-balance aging
(BENCHMARKS.md). A checkpoint row now holds those attributes as they were when it was built, and a checkpoint keeps
its positive balances summed per entity, currency, invoice date and due date (``balance_checkpoint_summary``: what
an aging of any date can be bucketed from). The as-of aging reads that summary, and corrects it for the few invoices
that moved between the checkpoint and the date: their checkpoint contribution out, their balance on the date in.

**Exact only while the attributes it copied still hold.** An ingest may change an invoice's due date, invoice date,
currency or customer after the build. Every such change is recorded, by the database in the statement that makes it
(the same trigger that writes the movements on PostgreSQL; a row trigger on SQLite), in ``invoice_attribute_changes``
(immutable, like the movements). A checkpoint records the highest change id when it was built
(``attributes_through``); an invoice with a later change is read from ``invoices``, not from the checkpoint's copy.
So the answer is the same as the one from the movements alone (``writeoffs.subledger``), which
``test_subledger_checkpoints.py`` attacks with a due date moved after the build.

**Checkpoints are rebuilt.** They are derived data (migration 0016): the tables are dropped and created again with
the new columns, and the next ingest builds the month end it needs. Nothing is lost but speed until then.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from writeoffs.db.money import ExactMoney

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_IMMUTABLE = "ledger: invoice attribute changes are immutable"
#: The invoice columns a checkpoint row copies (entity_code is part of the invoice's key; recorded all the same).
ATTRIBUTES = ("entity_code", "currency", "customer_id", "invoice_date", "due_date")
_CHANGED = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in ATTRIBUTES)


def _m0015():
    path = Path(__file__).with_name("0015_movement_time_once.py")
    spec = importlib.util.spec_from_file_location("_writeoffs_migration_0015", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def pg_function() -> str:
    """0015's movement trigger function, which also records the attribute changes of an UPDATE."""
    old = _m0015().body()
    tail = "      END IF;\n      RETURN NULL;"
    assert old.count(tail) == 1, "0015's trigger body is not the one this migration extends"
    record = (
        "        INSERT INTO invoice_attribute_changes (invoice_id, recorded_at)\n"
        f"        SELECT n.id, t FROM moved_new n JOIN moved_old o ON o.id = n.id WHERE {_CHANGED};\n"
    )
    return old.replace(tail, record + tail, 1)


_PIN = """DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION ledger_invoice_moved() SET search_path = %I, pg_temp', current_schema());
  EXECUTE format('ALTER FUNCTION ledger_attribute_changes_guard() SET search_path = %I, pg_temp', current_schema());
END $$"""

PG_UP = [
    f"""CREATE FUNCTION ledger_attribute_changes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '{_IMMUTABLE}' USING ERRCODE = '23514';
    END $$""",
    """CREATE TRIGGER trg_attribute_changes_guard BEFORE UPDATE OR DELETE ON invoice_attribute_changes
       FOR EACH ROW EXECUTE FUNCTION ledger_attribute_changes_guard()""",
    """CREATE TRIGGER trg_attribute_changes_no_truncate BEFORE TRUNCATE ON invoice_attribute_changes
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_attribute_changes_guard()""",
    "ALTER TABLE invoice_attribute_changes ENABLE ALWAYS TRIGGER trg_attribute_changes_guard",
    "ALTER TABLE invoice_attribute_changes ENABLE ALWAYS TRIGGER trg_attribute_changes_no_truncate",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS trg_attribute_changes_no_truncate ON invoice_attribute_changes",
    "DROP TRIGGER IF EXISTS trg_attribute_changes_guard ON invoice_attribute_changes",
    "DROP FUNCTION IF EXISTS ledger_attribute_changes_guard()",
]

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"


def _raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


SQLITE_UP = [
    f"""CREATE TRIGGER trg_invoices_attributes_changed AFTER UPDATE OF {", ".join(ATTRIBUTES)} ON invoices
        WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in ATTRIBUTES)}
        BEGIN
          INSERT INTO invoice_attribute_changes (invoice_id, recorded_at) VALUES (NEW.id, {_SQLITE_NOW});
        END""",
    f"CREATE TRIGGER trg_attribute_changes_no_update BEFORE UPDATE ON invoice_attribute_changes {_raise(_IMMUTABLE)}",
    f"CREATE TRIGGER trg_attribute_changes_no_delete BEFORE DELETE ON invoice_attribute_changes {_raise(_IMMUTABLE)}",
    # REPLACE deletes the row in the way without firing DELETE triggers (see 0009): refuse a colliding insert.
    f"""CREATE TRIGGER trg_attribute_changes_no_collision BEFORE INSERT ON invoice_attribute_changes
        WHEN EXISTS (SELECT 1 FROM invoice_attribute_changes o WHERE o.id = NEW.id)
        {_raise(_IMMUTABLE)}""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS trg_attribute_changes_no_collision",
    "DROP TRIGGER IF EXISTS trg_attribute_changes_no_delete",
    "DROP TRIGGER IF EXISTS trg_attribute_changes_no_update",
    "DROP TRIGGER IF EXISTS trg_invoices_attributes_changed",
]


def _ident() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _checkpoint_tables(*, attributes: bool) -> None:
    ident = _ident()
    extra = [sa.Column("attributes_through", ident, nullable=False)] if attributes else []
    op.create_table(
        "balance_checkpoints",
        sa.Column("id", ident, primary_key=True, autoincrement=True),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("movements_through", ident, nullable=False),
        sa.Column("recorded_through", sa.String(32), nullable=False),
        *extra,
        sa.PrimaryKeyConstraint("id", name="pk_balance_checkpoints"),
        sa.UniqueConstraint("as_of_date", name="uq_balance_checkpoints_as_of_date"),
    )
    columns = (
        [
            sa.Column("entity_code", sa.String(16), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("customer_id", ident, nullable=False),
            sa.Column("invoice_date", sa.Date(), nullable=False),
            sa.Column("due_date", sa.Date(), nullable=False),
        ]
        if attributes
        else []
    )
    op.create_table(
        "balance_checkpoint_rows",
        sa.Column("checkpoint_id", ident, nullable=False),
        sa.Column("invoice_id", ident, nullable=False),
        sa.Column("balance", ExactMoney(), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["balance_checkpoints.id"],
            name="fk_balance_checkpoint_rows_checkpoint_id_balance_checkpoints",
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "invoice_id", name="pk_balance_checkpoint_rows"),
    )
    if attributes:
        op.create_table(
            "balance_checkpoint_summary",
            sa.Column("checkpoint_id", ident, nullable=False),
            sa.Column("entity_code", sa.String(16), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("invoice_date", sa.Date(), nullable=False),
            sa.Column("due_date", sa.Date(), nullable=False),
            sa.Column("invoice_count", sa.Integer(), nullable=False),
            sa.Column("balance", ExactMoney(), nullable=False),
            sa.ForeignKeyConstraint(
                ["checkpoint_id"],
                ["balance_checkpoints.id"],
                name="fk_balance_checkpoint_summary_checkpoint_id_balance_checkpoints",
            ),
            sa.PrimaryKeyConstraint(
                "checkpoint_id",
                "entity_code",
                "currency",
                "invoice_date",
                "due_date",
                name="pk_balance_checkpoint_summary",
            ),
        )


def _drop_checkpoint_tables(*, attributes: bool) -> None:
    if attributes:
        op.drop_table("balance_checkpoint_summary")
    op.drop_table("balance_checkpoint_rows")
    op.drop_table("balance_checkpoints")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "invoice_attribute_changes",
        sa.Column("id", _ident(), primary_key=True, autoincrement=True),
        sa.Column("invoice_id", _ident(), nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_attribute_changes"),
    )
    _drop_checkpoint_tables(attributes=False)
    _checkpoint_tables(attributes=True)
    if pg:
        for stmt in PG_UP:
            op.execute(sa.text(stmt))
        op.execute(sa.text(pg_function()))
        op.execute(sa.text(_PIN))
    else:
        for stmt in SQLITE_UP:
            op.execute(sa.text(stmt))


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute(sa.text(_m0015().body()))  # 0015's function again (re-pinned below by 0015's own statement)
        op.execute(sa.text(_m0015()._PIN))
        for stmt in PG_DOWN:
            op.execute(sa.text(stmt))
    else:
        for stmt in SQLITE_DOWN:
            op.execute(sa.text(stmt))
    _drop_checkpoint_tables(attributes=True)
    _checkpoint_tables(attributes=False)
    op.drop_table("invoice_attribute_changes")
