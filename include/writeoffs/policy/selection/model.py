"""What selection evaluates: the statuses in scope, the routes and exclusions in evaluation order, and the
:class:`Scope` of a run (plus the :func:`money` rounding helper).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from writeoffs.policy.schema import Reason

#: Invoice statuses that are still receivables in a live run (charged-off invoices stay on the books).
LIVE_STATUSES = ("open", "charged_off", "reversed")
#: Write-off statuses that mean "already in flight": an invoice in another run's pending batch is not re-selected.
IN_FLIGHT = ("candidate", "approved")
#: Routes in evaluation order: (rule name, reason). The first route whose conditions hold decides the reason.
ROUTES: tuple[tuple[str, Reason], ...] = (
    ("dispute_resolved_lost", Reason.DISPUTE_LOST),
    ("settlement_remainder", Reason.SETTLEMENT),
    ("customer_bankrupt", Reason.BANKRUPTCY),
    ("customer_dissolved", Reason.DISSOLVED),
    ("statute_days_exceeded", Reason.STATUTE),
    ("small_balance_aged", Reason.SMALL_BALANCE),
    ("aged_and_collections_exhausted", Reason.UNCOLLECTIBLE),
)
#: Exclusions in evaluation order (the first that applies is reported).
EXCLUSIONS = (
    "reversed_hold",
    "open_dispute",
    "active_payment_plan",
    "parent_paid_transferred",
    "child_partial",
    "partial_not_allowed",
    "recent_payment",
)
#: Routes that the recent-payment exclusion does not block: a settlement or a lost dispute usually comes with a
#: recent payment of the undisputed/settled part, and trustee distributions say nothing about collectability.
_RECENT_PAYMENT_EXEMPT = ("settlement_remainder", "dispute_resolved_lost", "customer_bankrupt")


@dataclass(frozen=True, slots=True)
class Scope:
    """What to evaluate. ``point_in_time`` reconstructs balances as they were on ``as_of`` (what-if on a past date)
    instead of trusting today's open balance and status (a live run)."""

    as_of: date
    point_in_time: bool = False


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0001"))
