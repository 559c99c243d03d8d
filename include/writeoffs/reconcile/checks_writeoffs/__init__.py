"""Reconciliation checks: every approved write-off ended in the books once, and posting kept its rules.

``approved_vs_posted`` (each item of a posted batch is posted, skipped with a reason or excluded),
``writeoff_entries`` (one active write-off entry per posted write-off), ``paid_after_selection`` and
``posting_rules`` (no posted write-off of a paid invoice, under a hold, or of a child the parent paid).

Layout: :mod:`~writeoffs.reconcile.checks_writeoffs.posted` (``approved_vs_posted``, ``writeoff_entries``, in SQL
files under ``sql/`` and SQLAlchemy Core) and :mod:`~writeoffs.reconcile.checks_writeoffs.rules`
(``paid_after_selection``, ``posting_rules``, in SQLAlchemy Core). Every name callers used from
``writeoffs.reconcile.checks_writeoffs`` is re-exported here.
"""

from writeoffs.reconcile.checks_writeoffs.posted import (
    POSTED_BATCH_STATUSES,
    SETTLED_ITEM_STATUSES,
    check_approved_vs_posted,
    check_writeoff_entries,
)
from writeoffs.reconcile.checks_writeoffs.rules import (
    check_paid_after_selection,
    check_posting_rules,
)

__all__ = [
    "POSTED_BATCH_STATUSES",
    "SETTLED_ITEM_STATUSES",
    "check_approved_vs_posted",
    "check_paid_after_selection",
    "check_posting_rules",
    "check_writeoff_entries",
]
