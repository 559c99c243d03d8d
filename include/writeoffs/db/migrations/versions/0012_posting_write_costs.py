"""posting write costs: flip check per flipped entry; no duplicate line index; HOT flip and write-off updates

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07

Issue 12 (posting 50,000 write-offs no slower than before the accounting core). Same guarantees, less work per
posted chunk; what each change costs and saves was measured with ``EXPLAIN ANALYZE`` on ``bench/bench_post.py``:

**The flip check** (PostgreSQL, ``ledger_je_post_check``, migration 0002). It answered "two lines or more, balanced
per transaction currency, balanced per functional currency" with three joins of the transition table against
*all* of ``journal_lines`` (hash joins over a sequential scan each): its cost grew with the size of the ledger, not
of the statement (70-110 ms per 5,000-entry flip with 100,000 lines in the ledger; more with every posting). It now
reads each flipped entry's lines once, through the ``(entry_id, line_no)`` index, and decides all three rules in one
aggregate per entry (``GROUPING SETS``: the entry, per currency, per functional currency): ~28 ms for the same
flip, and independent of the ledger's size. The rules, the message and the error code are those of 0002; the
period rule is unchanged. ``tests/integration/test_ledger_statement_triggers.py`` drives each refusal.

**One index fewer on journal_lines** (both databases). ``ix_journal_lines_entry_id (entry_id)`` duplicated the
leading column of the unique ``(entry_id, line_no)`` constraint's index, which serves every look-up by entry (the
triggers, the foreign key's checks, reports): 100,000 index insertions per 50,000 write-offs for nothing.

**Room on the page for the one update a row expects** (PostgreSQL, ``fillfactor = 50`` on ``journal_entries`` and
``writeoffs``). A journal entry is inserted ``pending`` and flipped to ``posted`` in the same transaction (the
protocol of 0002); a write-off is updated through its life (candidate -> approved -> posted or skipped; reversed).
None of those updates changes an indexed column, but with full pages each wrote the new row version on another page
plus one entry in each of the table's five indexes. With half-empty pages PostgreSQL updates in place (HOT): no
index writes. Measured on a 5,000-entry flip: ~25-35 ms instead of ~75-200 ms, interleaved on the same (loaded)
machine. Cost: both heaps stay about twice the size of their live rows (the indexes are unchanged). Only pages
written from now on are affected (no table rewrite).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The flip check, 0002's rules in one pass per entry. GROUPING(currency, functional_currency) = 3 marks the
# per-entry row (an entry without lines still yields it, with COUNT(*) = 0); GROUPING(currency) = 0 the
# per-currency rows; the rest are the per-functional-currency rows.
PG_POST_CHECK = """CREATE OR REPLACE FUNCTION ledger_je_post_check() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad record;
    BEGIN
      -- trg_je_guard refused every UPDATE of a posted row: each 'posted' row here was flipped by this statement.
      SELECT f.id INTO bad FROM flipped f
       WHERE f.status = 'posted' AND EXISTS (
             SELECT 1 FROM journal_lines l WHERE l.entry_id = f.id
             GROUP BY GROUPING SETS ((), (l.currency), (l.functional_currency))
             HAVING CASE WHEN GROUPING(l.currency, l.functional_currency) = 3 THEN COUNT(*) < 2
                         WHEN GROUPING(l.currency) = 0 THEN ROUND(SUM(l.debit) - SUM(l.credit), 4) <> 0
                         ELSE ROUND(SUM(l.functional_debit) - SUM(l.functional_credit), 4) <> 0 END)
       LIMIT 1;
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
    END $$"""


def _post_check_0002() -> str:
    """0002's definition of the flip check (the downgrade restores it from there, not from a copy)."""
    path = Path(__file__).with_name("0002_ledger_integrity_triggers.py")
    spec = importlib.util.spec_from_file_location("_writeoffs_migration_0002", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    (stmt,) = (s for s in module.PG_UP if s.startswith("CREATE FUNCTION ledger_je_post_check()"))
    return stmt.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


#: CREATE OR REPLACE drops the function's settings: pin its search_path again as 0011 does for every guard (a temporary
#: table must not stand in for journal_lines inside the check).
_PIN = """DO $$ BEGIN
  EXECUTE format('ALTER FUNCTION ledger_je_post_check() SET search_path = %I, pg_temp', current_schema());
END $$"""


def upgrade() -> None:
    bind = op.get_bind()
    # Plain DROP INDEX, not a batch operation: SQLite's table rebuild would drop the table's triggers.
    op.drop_index("ix_journal_lines_entry_id", table_name="journal_lines")
    if bind.dialect.name == "postgresql":
        op.execute(sa.text(PG_POST_CHECK))
        op.execute(sa.text(_PIN))
        for table in ("journal_entries", "writeoffs"):
            op.execute(sa.text(f"ALTER TABLE {table} SET (fillfactor = 50)"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in ("journal_entries", "writeoffs"):
            op.execute(sa.text(f"ALTER TABLE {table} RESET (fillfactor)"))
        op.execute(sa.text(_post_check_0002()))
        op.execute(sa.text(_PIN))
    op.create_index("ix_journal_lines_entry_id", "journal_lines", ["entry_id"], unique=False)
