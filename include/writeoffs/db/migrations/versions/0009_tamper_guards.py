"""tamper guards: SQLite REPLACE cannot rewrite posted or audit rows; fiscal periods never overlap, closed stays closed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Issue 14. Two holes an insider with a SQL prompt could use, closed by the database for whoever connects:

**SQLite's REPLACE.** ``INSERT OR REPLACE`` / ``REPLACE INTO`` / ``UPDATE OR REPLACE`` resolve a UNIQUE or PRIMARY
KEY conflict by deleting the row in the way, and SQLite fires DELETE triggers for those implicit deletes only when
``PRAGMA recursive_triggers`` is on. That pragma belongs to the *connection*: an attacker's own ``sqlite3`` on the
file leaves it off, so 0002's ``BEFORE DELETE`` guards never saw a posted entry, a posted line or an audit row
replaced. The guards below are in the schema, so they hold for every connection: an INSERT (of any conflict clause)
whose key already exists in ``journal_entries`` (id, idempotency key, reversed entry), ``journal_lines`` (id, entry +
line number), ``audit_log`` (id, row hash) or ``fiscal_periods`` (entity + period) is refused, and so is an UPDATE
that moves a row's key onto another row's. A BEFORE INSERT trigger cannot tell REPLACE from ``ON CONFLICT DO
NOTHING``, so the ledger's own code no longer offers SQLite a colliding row at all (``writeoffs.ledger.insert_new``);
a plain INSERT of a duplicate failed before and fails now, with a ``ledger:`` message. Upserts (``ON CONFLICT DO
UPDATE``) on protected rows were and stay refused by the UPDATE guards of 0002 (and now by these INSERT guards
first). PostgreSQL has no REPLACE; nothing to add there for it.

**Fiscal periods** (both databases). Posting into a closed month was possible by re-opening the period with a raw
UPDATE (post, then close again), by deleting and re-inserting it open, or by a second period row (new, or an open
month widened) whose dates cover the closed month. Now:
- a closed period is final: it cannot be updated (re-opened, re-dated, its closer rewritten) or deleted. There is no
  re-open; a correction to a closed month is posted in an open one (a reversal or an adjusting entry);
- two periods of one entity never overlap (checked on INSERT and UPDATE). On PostgreSQL the check takes a
  transaction-scoped advisory lock per entity first, so two transactions cannot each insert one half of an overlap
  under READ COMMITTED (the isolation the ledger uses).
Both databases raise an integrity error whose message starts with ``ledger:``; ``writeoffs.ledger.translate`` names
closed-period refusals ``ClosedPeriod`` and key collisions ``PostedEntryImmutable``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ENTRY_COLLIDES = "ledger: an insert or key change may not collide with an existing journal entry (posted entries are immutable; REPLACE refused)"
_LINE_COLLIDES = "ledger: an insert or key change may not collide with an existing journal line (posted entries are immutable; REPLACE refused)"
_AUDIT_COLLIDES = "ledger: audit log is append-only (an insert may not collide with an existing row; REPLACE refused)"
_PERIOD_CLOSED = "ledger: fiscal period is closed; it cannot be re-opened, changed, replaced or deleted"
_PERIOD_OVERLAP = "ledger: fiscal periods of an entity may not overlap (or replace one another)"

#: Another journal entry (not ``{me}``) holding one of NEW's unique keys.
_ENTRY_KEY_TAKEN = """EXISTS (SELECT 1 FROM journal_entries o WHERE {me}
            (o.id = NEW.id OR o.idempotency_key = NEW.idempotency_key OR o.reverses_entry_id = NEW.reverses_entry_id))"""
_LINE_KEY_TAKEN = """EXISTS (SELECT 1 FROM journal_lines o WHERE {me}
            (o.id = NEW.id OR (o.entry_id = NEW.entry_id AND o.line_no = NEW.line_no)))"""
#: Another period of NEW's entity (not ``{me}``) that NEW's dates overlap.
_OVERLAP = """EXISTS (SELECT 1 FROM fiscal_periods p WHERE p.entity_code = NEW.entity_code {me}
            AND p.start_date <= NEW.end_date AND NEW.start_date <= p.end_date)"""
_SAME_KEY_CLOSED = """EXISTS (SELECT 1 FROM fiscal_periods p WHERE p.entity_code = NEW.entity_code
            AND p.period = NEW.period AND p.status = 'closed')"""
_SAME_KEY = "EXISTS (SELECT 1 FROM fiscal_periods p WHERE p.entity_code = NEW.entity_code AND p.period = NEW.period)"


def _raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


SQLITE_UP = [
    f"""CREATE TRIGGER trg_je_no_collision BEFORE INSERT ON journal_entries
        WHEN {_ENTRY_KEY_TAKEN.format(me="")}
        {_raise(_ENTRY_COLLIDES)}""",
    # UPDATE OF the key columns only: posting's flip (status, posted_at) never pays for the look-up.
    f"""CREATE TRIGGER trg_je_no_key_collision BEFORE UPDATE OF id, idempotency_key, reverses_entry_id
        ON journal_entries
        WHEN {_ENTRY_KEY_TAKEN.format(me="o.id <> OLD.id AND")}
        {_raise(_ENTRY_COLLIDES)}""",
    f"""CREATE TRIGGER trg_jl_no_collision BEFORE INSERT ON journal_lines
        WHEN {_LINE_KEY_TAKEN.format(me="")}
        {_raise(_LINE_COLLIDES)}""",
    f"""CREATE TRIGGER trg_jl_no_key_collision BEFORE UPDATE OF id, entry_id, line_no ON journal_lines
        WHEN {_LINE_KEY_TAKEN.format(me="o.id <> OLD.id AND")}
        {_raise(_LINE_COLLIDES)}""",
    f"""CREATE TRIGGER trg_audit_no_collision BEFORE INSERT ON audit_log
        WHEN EXISTS (SELECT 1 FROM audit_log o WHERE o.id = NEW.id OR o.row_hash = NEW.row_hash)
        {_raise(_AUDIT_COLLIDES)}""",
    # Periods. The two INSERT guards split on "a closed period of the same key exists" so that each refusal names
    # its reason (re-opening a closed month by REPLACE or upsert reads "closed").
    f"""CREATE TRIGGER trg_fp_closed_no_replace BEFORE INSERT ON fiscal_periods
        WHEN {_SAME_KEY_CLOSED}
        {_raise(_PERIOD_CLOSED)}""",
    f"""CREATE TRIGGER trg_fp_no_overlap_insert BEFORE INSERT ON fiscal_periods
        WHEN NOT {_SAME_KEY_CLOSED} AND ({_SAME_KEY} OR {_OVERLAP.format(me="")})
        {_raise(_PERIOD_OVERLAP)}""",
    f"""CREATE TRIGGER trg_fp_no_overlap_update BEFORE UPDATE ON fiscal_periods
        WHEN OLD.status <> 'closed' AND {_OVERLAP.format(me="AND NOT (p.entity_code = OLD.entity_code AND p.period = OLD.period)")}
        {_raise(_PERIOD_OVERLAP)}""",
    f"""CREATE TRIGGER trg_fp_no_key_collision BEFORE UPDATE OF entity_code, period ON fiscal_periods
        WHEN OLD.status <> 'closed' AND EXISTS (SELECT 1 FROM fiscal_periods p
            WHERE p.entity_code = NEW.entity_code AND p.period = NEW.period
              AND NOT (p.entity_code = OLD.entity_code AND p.period = OLD.period))
        {_raise(_PERIOD_OVERLAP)}""",
    f"""CREATE TRIGGER trg_fp_closed_no_update BEFORE UPDATE ON fiscal_periods
        WHEN OLD.status = 'closed'
        {_raise(_PERIOD_CLOSED)}""",
    f"""CREATE TRIGGER trg_fp_closed_no_delete BEFORE DELETE ON fiscal_periods
        WHEN OLD.status = 'closed'
        {_raise(_PERIOD_CLOSED)}""",
]
SQLITE_TRIGGERS = (
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
)

# PostgreSQL: one row trigger. Same-key INSERTs are left to the primary key (ON CONFLICT DO NOTHING keeps the
# bootstrap re-runnable; ON CONFLICT DO UPDATE of a closed period becomes an UPDATE, refused here).
PG_UP = [
    """CREATE FUNCTION ledger_fp_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE other varchar;
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status = 'closed' THEN
        RAISE EXCEPTION 'ledger: fiscal period % of entity % is closed; it cannot be re-opened, changed, replaced or deleted',
          OLD.period, OLD.entity_code USING ERRCODE = '23514';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      -- Serialise period writers per entity: the overlap look-up below then sees the other's committed rows.
      PERFORM pg_advisory_xact_lock(hashtext('writeoffs.fiscal_periods'), hashtext(NEW.entity_code));
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
    END $$""",
    """CREATE TRIGGER trg_fp_guard BEFORE INSERT OR UPDATE OR DELETE ON fiscal_periods
       FOR EACH ROW EXECUTE FUNCTION ledger_fp_guard()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS trg_fp_guard ON fiscal_periods",
    "DROP FUNCTION IF EXISTS ledger_fp_guard()",
]


def upgrade() -> None:
    bind = op.get_bind()
    for stmt in PG_UP if bind.dialect.name == "postgresql" else SQLITE_UP:
        op.execute(sa.text(stmt))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for stmt in PG_DOWN:
            op.execute(sa.text(stmt))
    else:
        for name in reversed(SQLITE_TRIGGERS):
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
