"""Reconciliation checks: recoveries and the allowance for doubtful accounts.

``recoveries`` (within what was written off, ``recovered_amount`` consistent), ``allowance`` (the allowance account
explained by its entries), ``recovery_cash`` (cash received on written-off amounts = cash booked) and
``allowance_sign`` (never in debit; equal to the latest estimate right after its true-up).

Layout: :mod:`~writeoffs.reconcile.checks_recoveries.recoveries` (``recoveries``, ``recovery_cash``) and
:mod:`~writeoffs.reconcile.checks_recoveries.allowance` (``allowance``, ``allowance_sign``). Every name callers
used from ``writeoffs.reconcile.checks_recoveries`` is re-exported here.
"""

from writeoffs.reconcile.checks_recoveries.allowance import ALLOWANCE_SOURCES, check_allowance, check_allowance_sign
from writeoffs.reconcile.checks_recoveries.recoveries import (
    RECOVERY_CASH_SOURCES,
    check_recoveries,
    check_recovery_cash,
)

__all__ = [
    "ALLOWANCE_SOURCES",
    "RECOVERY_CASH_SOURCES",
    "check_allowance",
    "check_allowance_sign",
    "check_recoveries",
    "check_recovery_cash",
]
