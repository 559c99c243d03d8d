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

SQLite checks row by row (it has no statement-level triggers; it is the embedded, small-volume database).
PostgreSQL checks the same invariants once per statement over transition tables: see the comment above PG_UP for
why that is as strict and what it costs (posting 50,000 write-offs went from ~20 s to a few seconds).
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

# PostgreSQL: the same guarantees, checked per *statement* instead of per row.
#
# Posting flips thousands of entries and inserts their lines in a handful of statements. Row-level triggers that
# query (status look-ups per line, aggregates per entry, a deferred re-aggregation per line at COMMIT) cost more
# than the posting itself, so every check that needs a query runs once per statement over its transition tables
# (set-wise joins); row-level triggers remain only where a WHEN clause decides without a query, and they call
# their function only to raise.
#
# - journal_entries, BEFORE ROW with WHEN: an INSERT that is not 'pending', and any UPDATE/DELETE of a row that is
#   'posted', are refused. Hence every row that is 'posted' after an UPDATE was flipped by that very UPDATE.
# - journal_entries, AFTER UPDATE FOR EACH STATEMENT (trg_je_post_check): all rows the statement left 'posted' must
#   have >= 2 lines, balance per transaction and per functional currency, and fall into an open fiscal period.
#   AFTER, not BEFORE: it sees the statement's final state, so a data-modifying CTE that flips an entry and edits
#   its lines in one statement is checked on what it leaves behind.
# - journal_lines, AFTER INSERT/UPDATE/DELETE FOR EACH STATEMENT (trg_jl_guard*): one join of the touched lines'
#   entries (old and new side) against 'posted' refuses any change to a posted entry's lines.
# - "No transaction commits an unbalanced entry, pending or not": lines arrive in several statements (raw SQL one
#   line at a time; SQLAlchemy's insertmanyvalues splits a large executemany into pages, so an entry's two lines
#   can straddle two statements), so balance cannot be demanded at each statement's end. Instead
#   trg_jl_balanced* (AFTER ... FOR EACH STATEMENT) sums what the statement changed, per entry and currency
#   (+ new rows, - old rows, from the transition tables alone: no look-up of other lines), and only for pending
#   entries whose sums moved queues a re-check at COMMIT: a no-op UPDATE of the entry row fires the deferred
#   constraint trigger trg_je_balanced (one event per such entry, not per line), which re-aggregates all its lines.
#   Why that suffices: an entry's balance changes only through its lines; each committed entry balances (this very
#   check, by induction); so an entry unbalanced at COMMIT had its sums moved by some statement of this
#   transaction, which queued its re-check. A savepoint rolled back takes its lines and their queued re-checks
#   with it; SET CONSTRAINTS ... IMMEDIATE runs a queued re-check at once (and a later move queues a new one).
#   Posting moves each entry by debit - credit = 0 within one statement, so it queues nothing.
# - Posted entries need no commit-time check: they balanced when flipped and their lines cannot change after.
#
# Transition tables cannot serve a trigger with several events, hence one trigger per event. The UPDATE triggers
# keep the original names (trg_jl_guard, trg_jl_balanced): runbooks and the reconciliation tests disable exactly
# these to simulate a superuser editing a posted line.
#
# 23514 = check_violation: psycopg raises IntegrityError, like SQLite's RAISE(ABORT) inside a trigger.


def _unbalanced_among(ids: str) -> str:
    """SQL: ids of entries among ``ids`` (a subquery) whose lines do not balance per currency or functional currency."""
    return f"""
        SELECT l.entry_id FROM journal_lines l WHERE l.entry_id IN ({ids})
        GROUP BY l.entry_id, l.currency HAVING ROUND(SUM(l.debit) - SUM(l.credit), 4) <> 0
        UNION
        SELECT l.entry_id FROM journal_lines l WHERE l.entry_id IN ({ids})
        GROUP BY l.entry_id, l.functional_currency
        HAVING ROUND(SUM(l.functional_debit) - SUM(l.functional_credit), 4) <> 0"""


_FLIPPED = "SELECT f.id FROM flipped f WHERE f.status = 'posted'"
_TOUCHED = {
    "INSERT": "SELECT entry_id FROM new_lines",
    "UPDATE": "SELECT entry_id FROM old_lines UNION SELECT entry_id FROM new_lines",
    "DELETE": "SELECT entry_id FROM old_lines",
}
_ADDED = (
    "SELECT entry_id, currency, debit - credit AS amount, functional_currency,"
    " functional_debit - functional_credit AS functional FROM new_lines"
)
_REMOVED = (
    "SELECT entry_id, currency, credit - debit AS amount, functional_currency,"
    " functional_credit - functional_debit AS functional FROM old_lines"
)
#: What a statement did to the balances: signed amounts per line, added rows positive and removed rows negative.
_MOVED = {"INSERT": _ADDED, "UPDATE": f"{_ADDED} UNION ALL {_REMOVED}", "DELETE": _REMOVED}
_TRANSITIONS = {
    "INSERT": "REFERENCING NEW TABLE AS new_lines",
    "UPDATE": "REFERENCING OLD TABLE AS old_lines NEW TABLE AS new_lines",
    "DELETE": "REFERENCING OLD TABLE AS old_lines",
}
#: Trigger name per event for the two statement-level line checks (UPDATE keeps the historical names).
_LINE_TRIGGERS = {
    "ledger_jl_guard": {"INSERT": "trg_jl_guard_insert", "UPDATE": "trg_jl_guard", "DELETE": "trg_jl_guard_delete"},
    "ledger_jl_balanced": {
        "INSERT": "trg_jl_balanced_insert",
        "UPDATE": "trg_jl_balanced",
        "DELETE": "trg_jl_balanced_delete",
    },
}


def _per_event(body: str) -> str:
    """PL/pgSQL branches on TG_OP; each branch may only name the transition tables its event has."""
    branches = [
        f"{'IF' if n == 0 else 'ELSIF'} TG_OP = '{op}' THEN {body.format(touched=_TOUCHED[op], moved=_MOVED[op])}"
        for n, op in enumerate(_TOUCHED)
    ]
    return "\n      ".join([*branches, "END IF;"])


# min(), not LIMIT 1: with LIMIT the planner may scan journal_entries hoping to meet a posted row early.
_GUARD_LINES = "SELECT min(e.id) INTO eid FROM journal_entries e WHERE e.status = 'posted' AND e.id IN ({touched});"
# Only pending entries: a posted entry's lines cannot change (ledger_jl_guard refuses the whole statement).
_QUEUE_RECHECK = """UPDATE journal_entries e SET status = e.status WHERE e.status = 'pending' AND e.id IN (
          SELECT m.entry_id FROM ({moved}) m GROUP BY m.entry_id, m.currency HAVING SUM(m.amount) <> 0
          UNION
          SELECT m.entry_id FROM ({moved}) m GROUP BY m.entry_id, m.functional_currency
          HAVING SUM(m.functional) <> 0);"""


PG_UP = [
    # Called only when a WHEN clause below already found a violation; re-checks so it is also right on its own.
    """CREATE FUNCTION ledger_je_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_je_insert_pending BEFORE INSERT ON journal_entries
       FOR EACH ROW WHEN (NEW.status <> 'pending') EXECUTE FUNCTION ledger_je_guard()""",
    """CREATE TRIGGER trg_je_guard BEFORE UPDATE OR DELETE ON journal_entries
       FOR EACH ROW WHEN (OLD.status = 'posted') EXECUTE FUNCTION ledger_je_guard()""",
    f"""CREATE FUNCTION ledger_je_post_check() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad record;
    BEGIN
      -- trg_je_guard refused every UPDATE of a posted row: each 'posted' row here was flipped by this statement.
      SELECT f.id INTO bad FROM flipped f LEFT JOIN journal_lines l ON l.entry_id = f.id
       WHERE f.status = 'posted' GROUP BY f.id HAVING COUNT(l.entry_id) < 2 LIMIT 1;
      IF NOT FOUND THEN
        SELECT u.entry_id AS id INTO bad FROM ({_unbalanced_among(_FLIPPED)}) u LIMIT 1;
      END IF;
      IF FOUND THEN
        RAISE EXCEPTION 'ledger: unbalanced journal entry refused (entry %)', bad.id USING ERRCODE = '23514';
      END IF;
      SELECT f.id, f.period, f.entity_code INTO bad FROM flipped f
       WHERE f.status = 'posted' AND NOT EXISTS (
             SELECT 1 FROM fiscal_periods p WHERE p.entity_code = f.entity_code AND p.period = f.period
                AND p.status = 'open' AND f.posting_date BETWEEN p.start_date AND p.end_date)
       LIMIT 1;
      IF FOUND THEN
        RAISE EXCEPTION 'ledger: fiscal period % is closed or missing for entity % (entry %)',
          bad.period, bad.entity_code, bad.id USING ERRCODE = '23514';
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_je_post_check AFTER UPDATE ON journal_entries
       REFERENCING NEW TABLE AS flipped FOR EACH STATEMENT EXECUTE FUNCTION ledger_je_post_check()""",
    f"""CREATE FUNCTION ledger_je_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS ({_unbalanced_among("NEW.id")}) THEN
        RAISE EXCEPTION 'ledger: unbalanced journal entry refused at commit (entry %)', NEW.id
          USING ERRCODE = '23514';
      END IF;
      RETURN NULL;
    END $$""",
    # Fired only by UPDATEs that leave an entry pending: in practice the no-op UPDATE of ledger_jl_balanced().
    """CREATE CONSTRAINT TRIGGER trg_je_balanced AFTER UPDATE ON journal_entries
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'pending')
       EXECUTE FUNCTION ledger_je_balanced()""",
    f"""CREATE FUNCTION ledger_jl_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE eid bigint;
    BEGIN
      {_per_event(_GUARD_LINES)}
      IF eid IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: posted journal entry % is immutable; post a reversal', eid USING ERRCODE = '23514';
      END IF;
      RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION ledger_jl_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      {_per_event(_QUEUE_RECHECK)}
      RETURN NULL;
    END $$""",
    *(
        f"""CREATE TRIGGER {name} AFTER {op} ON journal_lines {_TRANSITIONS[op]}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}()"""
        for function, names in _LINE_TRIGGERS.items()
        for op, name in names.items()
    ),
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
    *(
        f"DROP TRIGGER IF EXISTS {name} ON journal_lines"
        for names in reversed(_LINE_TRIGGERS.values())
        for name in reversed(names.values())
    ),
    "DROP TRIGGER IF EXISTS trg_je_balanced ON journal_entries",
    "DROP TRIGGER IF EXISTS trg_je_post_check ON journal_entries",
    "DROP TRIGGER IF EXISTS trg_je_guard ON journal_entries",
    "DROP TRIGGER IF EXISTS trg_je_insert_pending ON journal_entries",
    "DROP FUNCTION IF EXISTS ledger_audit_guard()",
    "DROP FUNCTION IF EXISTS ledger_jl_balanced()",
    "DROP FUNCTION IF EXISTS ledger_jl_guard()",
    "DROP FUNCTION IF EXISTS ledger_je_balanced()",
    "DROP FUNCTION IF EXISTS ledger_je_post_check()",
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
