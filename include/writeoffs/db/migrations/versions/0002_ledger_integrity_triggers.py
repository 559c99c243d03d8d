"""Ledger integrity enforced by the database itself, plus ISO 4217 reference data.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Why triggers: the invariants auditors rely on must hold even against raw SQL, not only through our Python:
- a journal entry is inserted ``pending``; it becomes ``posted`` only if its lines balance per transaction
  currency and per functional currency, it has at least two lines, and its fiscal period is open;
- a posted entry and its lines can never be updated or deleted (corrections are reversals);
- audit rows can never be updated or deleted (the hash chain makes tampering detectable anyway);
- PostgreSQL additionally checks at COMMIT (deferred constraint trigger) that no transaction leaves an
  entry's lines unbalanced, pending or not.
Both dialects raise an integrity error whose message starts with ``ledger:``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from writeoffs.money import MINOR_UNITS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UNBALANCED_SQL = """
    EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = {eid}
            GROUP BY l.currency HAVING ROUND(SUM(l.debit) - SUM(l.credit), 4) <> 0)
    OR EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = {eid}
            GROUP BY l.functional_currency
            HAVING ROUND(SUM(l.functional_debit) - SUM(l.functional_credit), 4) <> 0)
"""
_CLOSED_SQL = """
    NOT EXISTS (SELECT 1 FROM fiscal_periods p WHERE p.entity_code = {new}.entity_code
                AND p.period = {new}.period AND p.status = 'open'
                AND {new}.posting_date BETWEEN p.start_date AND p.end_date)
"""

SQLITE_UP = [
    """CREATE TRIGGER trg_je_insert_pending BEFORE INSERT ON journal_entries
        WHEN NEW.status <> 'pending'
        BEGIN SELECT RAISE(ABORT, 'ledger: a journal entry must be inserted pending and then posted'); END""",
    f"""CREATE TRIGGER trg_je_post_check BEFORE UPDATE ON journal_entries
        WHEN OLD.status = 'pending' AND NEW.status = 'posted' AND (
            (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = NEW.id) < 2
            OR {_UNBALANCED_SQL.format(eid="NEW.id")})
        BEGIN SELECT RAISE(ABORT, 'ledger: unbalanced journal entry refused'); END""",
    f"""CREATE TRIGGER trg_je_post_period BEFORE UPDATE ON journal_entries
        WHEN OLD.status = 'pending' AND NEW.status = 'posted' AND {_CLOSED_SQL.format(new="NEW")}
        BEGIN SELECT RAISE(ABORT, 'ledger: fiscal period is closed or missing'); END""",
    """CREATE TRIGGER trg_je_posted_no_update BEFORE UPDATE ON journal_entries
        WHEN OLD.status = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END""",
    """CREATE TRIGGER trg_je_posted_no_delete BEFORE DELETE ON journal_entries
        WHEN OLD.status = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END""",
    """CREATE TRIGGER trg_jl_posted_no_insert BEFORE INSERT ON journal_lines
        WHEN (SELECT status FROM journal_entries WHERE id = NEW.entry_id) = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END""",
    """CREATE TRIGGER trg_jl_posted_no_update BEFORE UPDATE ON journal_lines
        WHEN (SELECT status FROM journal_entries WHERE id = OLD.entry_id) = 'posted'
          OR (SELECT status FROM journal_entries WHERE id = NEW.entry_id) = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END""",
    """CREATE TRIGGER trg_jl_posted_no_delete BEFORE DELETE ON journal_lines
        WHEN (SELECT status FROM journal_entries WHERE id = OLD.entry_id) = 'posted'
        BEGIN SELECT RAISE(ABORT, 'ledger: posted journal entry is immutable; post a reversal'); END""",
    """CREATE TRIGGER trg_audit_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'ledger: audit log is append-only'); END""",
    """CREATE TRIGGER trg_audit_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'ledger: audit log is append-only'); END""",
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
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
    )
]

# 23514 = check_violation: psycopg raises IntegrityError, like SQLite's RAISE(ABORT) inside a trigger.
PG_UP = [
    f"""CREATE FUNCTION ledger_je_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
          RAISE EXCEPTION 'ledger: a journal entry must be inserted pending and then posted' USING ERRCODE = '23514';
        END IF;
        RETURN NEW;
      END IF;
      IF OLD.status = 'posted' THEN
        RAISE EXCEPTION 'ledger: posted journal entry % is immutable; post a reversal', OLD.id
          USING ERRCODE = '23514';
      END IF;
      IF TG_OP = 'DELETE' THEN
        RETURN OLD;
      END IF;
      IF NEW.status = 'posted' THEN
        IF (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = NEW.id) < 2
           OR {_UNBALANCED_SQL.format(eid="NEW.id")} THEN
          RAISE EXCEPTION 'ledger: unbalanced journal entry refused (entry %)', NEW.id USING ERRCODE = '23514';
        END IF;
        IF {_CLOSED_SQL.format(new="NEW")} THEN
          RAISE EXCEPTION 'ledger: fiscal period % is closed or missing for entity %', NEW.period, NEW.entity_code
            USING ERRCODE = '23514';
        END IF;
      END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_je_guard BEFORE INSERT OR UPDATE OR DELETE ON journal_entries
       FOR EACH ROW EXECUTE FUNCTION ledger_je_guard()""",
    """CREATE FUNCTION ledger_jl_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') AND
         (SELECT status FROM journal_entries WHERE id = OLD.entry_id) = 'posted' THEN
        RAISE EXCEPTION 'ledger: posted journal entry % is immutable; post a reversal', OLD.entry_id
          USING ERRCODE = '23514';
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') AND
         (SELECT status FROM journal_entries WHERE id = NEW.entry_id) = 'posted' THEN
        RAISE EXCEPTION 'ledger: posted journal entry % is immutable; post a reversal', NEW.entry_id
          USING ERRCODE = '23514';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_jl_guard BEFORE INSERT OR UPDATE OR DELETE ON journal_lines
       FOR EACH ROW EXECUTE FUNCTION ledger_jl_guard()""",
    f"""CREATE FUNCTION ledger_jl_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE eid bigint;
    BEGIN
      IF TG_OP = 'DELETE' THEN eid := OLD.entry_id; ELSE eid := NEW.entry_id; END IF;
      IF {_UNBALANCED_SQL.format(eid="eid")} THEN
        RAISE EXCEPTION 'ledger: unbalanced journal entry refused at commit (entry %)', eid USING ERRCODE = '23514';
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE CONSTRAINT TRIGGER trg_jl_balanced AFTER INSERT OR UPDATE OR DELETE ON journal_lines
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_jl_balanced()""",
    """CREATE FUNCTION ledger_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'ledger: audit log is append-only' USING ERRCODE = '23514';
    END $$""",
    """CREATE TRIGGER trg_audit_guard BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION ledger_audit_guard()""",
    # TRUNCATE bypasses row triggers: refuse it too for the tables whose history matters.
    """CREATE TRIGGER trg_audit_no_truncate BEFORE TRUNCATE ON audit_log
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_audit_guard()""",
    """CREATE TRIGGER trg_je_no_truncate BEFORE TRUNCATE ON journal_entries
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_audit_guard()""",
    """CREATE TRIGGER trg_jl_no_truncate BEFORE TRUNCATE ON journal_lines
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_audit_guard()""",
]
PG_DOWN = [
    "DROP TRIGGER IF EXISTS trg_jl_no_truncate ON journal_lines",
    "DROP TRIGGER IF EXISTS trg_je_no_truncate ON journal_entries",
    "DROP TRIGGER IF EXISTS trg_audit_no_truncate ON audit_log",
    "DROP TRIGGER IF EXISTS trg_audit_guard ON audit_log",
    "DROP TRIGGER IF EXISTS trg_jl_balanced ON journal_lines",
    "DROP TRIGGER IF EXISTS trg_jl_guard ON journal_lines",
    "DROP TRIGGER IF EXISTS trg_je_guard ON journal_entries",
    "DROP FUNCTION IF EXISTS ledger_audit_guard()",
    "DROP FUNCTION IF EXISTS ledger_jl_balanced()",
    "DROP FUNCTION IF EXISTS ledger_jl_guard()",
    "DROP FUNCTION IF EXISTS ledger_je_guard()",
]


def upgrade() -> None:
    bind = op.get_bind()
    for stmt in PG_UP if bind.dialect.name == "postgresql" else SQLITE_UP:
        op.execute(sa.text(stmt))
    currencies = sa.table("currencies", sa.column("code", sa.String), sa.column("minor_unit", sa.Integer))
    op.bulk_insert(
        currencies,
        [{"code": c, "minor_unit": u} for c, u in sorted(MINOR_UNITS.items())],
    )


def downgrade() -> None:
    bind = op.get_bind()
    op.execute(sa.text("DELETE FROM currencies"))
    for stmt in PG_DOWN if bind.dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(sa.text(stmt))
