"""The point-in-time sub-ledger: invoice balances, aging and changes for any past date, from immutable movements.

``invoices`` holds the current balances (materialised: selection, posting and today's aging read them);
``invoice_movements`` holds every change of an invoice's open balance or status, written by the database in the
statement that changes the invoice (migration 0013). Two dates per movement:

- ``effective_date``: the business date of the change (an ingest load's as-of date, a write-off's posting date, a
  recovery's date, a reversal's posting date; an invoice's first movement is dated its invoice date);
- ``recorded_at``: when the ledger learned it (the database's UTC clock).

So "as of 31 March, as known today" sums the movements effective on or before 31 March; "as known on 31 March" also
leaves out what was recorded after that day: an extract of 31 March loaded on 3 April (late) shows in the first and
not in the second.

Why a balance moved is declared once per change, by the function that makes it, with :func:`movement` (one home per
rule: merge, charge-off, write-off posting, recovery, reversal, clearing a reversal). A change nobody declared (raw
SQL) is still recorded, as kind ``direct`` dated the day it was made.

Every question below is ONE query (set-wise, ``GROUP BY``), on SQLite and PostgreSQL alike.

Submodules: :mod:`.common` (levels, the two dates, filters), :mod:`.movements` (declaring why a balance moves),
:mod:`.checkpoint` (balance checkpoints at period ends), :mod:`.balances` (balances as of a date), :mod:`.aging`
(aging as of a date), :mod:`.changes` (what changed between two dates, one invoice's history), :mod:`.gl` (the
sub-ledger against the GL's AR control account).
"""

from __future__ import annotations

from writeoffs.subledger.aging import (
    aged_invoices_sql,
    aged_params,
    aging_as_of,
    aging_current,
    aging_spec,
    later_movements_sql,
)
from writeoffs.subledger.balances import Balance, balances_as_of
from writeoffs.subledger.changes import Change, changes_between, changes_level, invoice_history
from writeoffs.subledger.checkpoint import (
    Checkpoint,
    build_checkpoint,
    checkpoint_balances_sql,
    checkpoint_period_end,
    checkpoints,
    choose_checkpoint,
    period_end_on_or_before,
)
from writeoffs.subledger.common import EVERYTHING, LEVELS, Known, Level, last_recorded
from writeoffs.subledger.gl import GlComparison, compare_with_gl
from writeoffs.subledger.movements import movement

__all__ = [
    "EVERYTHING",
    "LEVELS",
    "Balance",
    "Change",
    "Checkpoint",
    "GlComparison",
    "Known",
    "Level",
    "aged_invoices_sql",
    "aged_params",
    "aging_as_of",
    "aging_current",
    "aging_spec",
    "balances_as_of",
    "build_checkpoint",
    "changes_between",
    "changes_level",
    "checkpoint_balances_sql",
    "checkpoint_period_end",
    "checkpoints",
    "choose_checkpoint",
    "compare_with_gl",
    "invoice_history",
    "last_recorded",
    "later_movements_sql",
    "movement",
    "period_end_on_or_before",
]
