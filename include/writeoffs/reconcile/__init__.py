"""Reconciliation: does the sub-ledger agree with the general ledger, and did every approval end in the books?

Each check is a plain function ``check(conn, as_of, tolerance) -> list[Break]`` registered in :data:`CHECKS`. A
check never raises on a finding and never stops at the first one: it returns every break it sees, grouped so that
one root cause yields one break per (entity, currency, kind) with the affected documents attached. Checks are
set-wise SQL (aggregates and anti-joins on indexed keys); Python only shapes the offending rows, so the run costs
the same few scans whether the ledger holds a thousand invoices or a million.

All checks of a run read one consistent snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite): a posting committing halfway through a run must not show up as a break in one check and not in another.

What is compared is the *current* state of both ledgers; ``as_of`` is the business date the run is filed under.
A point-in-time comparison of a past date (sub-ledger from its movements vs GL lines dated up to then) is
:func:`writeoffs.subledger.compare_with_gl` (``python -m writeoffs subledger-vs-gl --as-of D``); the
``movements`` check here verifies that the movements still add up to every invoice's current balance.

Amounts are compared per currency with a tolerance (default 0, i.e. exact to the 4th decimal). Structural checks
(an entry that does not balance, a posting without its journal entry, two active write-off entries) ignore the
tolerance: they are wrong at any size.

Layout: :mod:`~writeoffs.reconcile.model` (value objects, shared SQL helpers), the checks by subject
(:mod:`~writeoffs.reconcile.checks_gl`, :mod:`~writeoffs.reconcile.checks_checkpoints`,
:mod:`~writeoffs.reconcile.checks_writeoffs`,
:mod:`~writeoffs.reconcile.checks_recoveries`), :mod:`~writeoffs.reconcile.run` (registry, running, storing),
:mod:`~writeoffs.reconcile.report` (the Markdown report) and :mod:`~writeoffs.reconcile.cli` (the subcommand).
Every name callers used from ``writeoffs.reconcile`` is re-exported here.
"""

from writeoffs.reconcile.checks_checkpoints import CHECKPOINT_RECHECK_DAYS, check_checkpoints
from writeoffs.reconcile.checks_gl import (
    check_ar_functional,
    check_entries_balanced,
    check_movements,
    check_subledger_vs_gl,
)
from writeoffs.reconcile.checks_recoveries import (
    ALLOWANCE_SOURCES,
    RECOVERY_CASH_SOURCES,
    check_allowance,
    check_allowance_sign,
    check_recoveries,
    check_recovery_cash,
)
from writeoffs.reconcile.checks_writeoffs import (
    POSTED_BATCH_STATUSES,
    SETTLED_ITEM_STATUSES,
    check_approved_vs_posted,
    check_paid_after_selection,
    check_posting_rules,
    check_writeoff_entries,
)
from writeoffs.reconcile.cli import register
from writeoffs.reconcile.model import (
    MAX_DOCUMENTS,
    WRITEOFFS_RECON_TOLERANCE_ENV,
    Break,
    Check,
    CheckFn,
    CheckOutcome,
    ReconResult,
    Tolerances,
)
from writeoffs.reconcile.report import _cell, render_report, report_path_for
from writeoffs.reconcile.run import CHECKS, reconcile, run_checks, store_run

__all__ = [
    "ALLOWANCE_SOURCES",
    "CHECKPOINT_RECHECK_DAYS",
    "CHECKS",
    "MAX_DOCUMENTS",
    "POSTED_BATCH_STATUSES",
    "RECOVERY_CASH_SOURCES",
    "SETTLED_ITEM_STATUSES",
    "WRITEOFFS_RECON_TOLERANCE_ENV",
    "Break",
    "Check",
    "CheckFn",
    "CheckOutcome",
    "ReconResult",
    "Tolerances",
    "_cell",
    "check_allowance",
    "check_allowance_sign",
    "check_approved_vs_posted",
    "check_ar_functional",
    "check_checkpoints",
    "check_entries_balanced",
    "check_movements",
    "check_paid_after_selection",
    "check_posting_rules",
    "check_recoveries",
    "check_recovery_cash",
    "check_subledger_vs_gl",
    "check_writeoff_entries",
    "reconcile",
    "register",
    "render_report",
    "report_path_for",
    "run_checks",
    "store_run",
]
