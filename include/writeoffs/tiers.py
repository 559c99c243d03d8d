"""Approval tiers: who may approve how much, per currency — item by item and per batch.

Lives apart from the policy loader and the approval/posting code because all three use it: the policy assigns a
tier to each candidate, the approval DAG routes to the tier's approvers, posting re-checks the recorded approval
against the same limits.

Limits fail closed: a currency a tier does not list is *refused* by that tier, never "unlimited". Only an explicit
``None`` value means unlimited, and the policy allows that on the top tier only, for the currencies the policy
names (``approval.currencies``). A 10,000,000 CHF write-off under a policy that never mentions CHF can be approved
by nobody.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from writeoffs.errors import ConfigError

#: Tier name for write-offs under the policy's small-balance tolerance: posted and audited, no human approval.
AUTO_TIER = "auto"

#: The approval machinery itself (the HITL DAG): the only actor that may record a timeout (``expired``) or an
#: escalation, and never a granting or rejecting decision.
SYSTEM_ACTOR = "airflow:writeoff_approval"

#: Limits per currency: ``None`` = explicitly unlimited; a currency that is not a key = refused.
Limits = Mapping[str, Decimal | None]


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    #: Largest single item this tier may approve, per currency.
    limits: Limits = field(default_factory=dict)
    approvers: tuple[str, ...] = ()
    response_timeout_hours: float = 48.0
    on_timeout: str = "expire"  # expire | escalate
    #: Largest batch total (sum of the items approved together) this tier may approve, per currency.
    batch_limits: Limits = field(default_factory=dict)

    def covers(self, amount: Decimal, currency: str) -> bool:
        """May this tier approve one item of ``amount``? A currency it has no limit for: no."""
        return _within(self.limits, amount, currency)

    def covers_batch(self, total: Decimal, currency: str) -> bool:
        """May this tier approve a batch totalling ``total``? A currency it has no batch limit for: no."""
        return _within(self.batch_limits, total, currency)

    def limit_for(self, currency: str) -> Decimal | None:
        """The item limit (``None``: unlimited or not configured — use :meth:`problem` to tell them apart)."""
        return self.limits.get(currency)

    def batch_limit_for(self, currency: str) -> Decimal | None:
        return self.batch_limits.get(currency)

    def problem(self, currency: str, max_item: Decimal | None, total: Decimal | None) -> str | None:
        """Why this tier may not approve a batch whose largest item is ``max_item`` and total ``total`` — or None.

        The one home of the limit rule: routing, the approval form, the ledger's decision record and posting's
        re-check all call it."""
        if max_item is None:
            return None
        if currency not in self.limits or currency not in self.batch_limits:
            return (
                f"tier {self.name!r} has no limit configured for {currency}: nobody may approve {currency} "
                f"write-offs until the policy sets one (approval.tiers[].limits and batch_limits)"
            )
        if not self.covers(max_item, currency):
            return (
                f"largest item {_text(max_item)} {currency} exceeds tier {self.name!r} item limit "
                f"{_text(self.limits[currency])} {currency}; escalate to a higher tier"
            )
        if total is not None and not self.covers_batch(total, currency):
            return (
                f"batch total {_text(total)} {currency} exceeds tier {self.name!r} batch limit "
                f"{_text(self.batch_limits[currency])} {currency}; escalate to a higher tier"
            )
        return None


def _within(limits: Limits, amount: Decimal, currency: str) -> bool:
    if currency not in limits:
        return False
    limit = limits[currency]
    return limit is None or amount <= limit


def _text(amount: Decimal | None) -> str:
    return "unlimited" if amount is None else f"{amount:,.2f}"


_CURRENCIES = ("USD", "EUR", "GBP")

DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(
        "ar_manager",
        {"USD": Decimal("5000"), "EUR": Decimal("5000"), "GBP": Decimal("4000")},
        ("ar_manager",),
        48,
        batch_limits={"USD": Decimal("25000"), "EUR": Decimal("25000"), "GBP": Decimal("20000")},
    ),
    Tier(
        "controller",
        {"USD": Decimal("50000"), "EUR": Decimal("50000"), "GBP": Decimal("40000")},
        ("controller",),
        72,
        batch_limits={"USD": Decimal("250000"), "EUR": Decimal("250000"), "GBP": Decimal("200000")},
    ),
    Tier("cfo", dict.fromkeys(_CURRENCIES), ("cfo",), 120, batch_limits=dict.fromkeys(_CURRENCIES)),
)


def tier_for(
    amount: Decimal, currency: str, tiers: Sequence[Tier] = DEFAULT_TIERS, total: Decimal | None = None
) -> Tier:
    """The lowest tier that may approve an item of ``amount`` (in a batch totalling ``total``, if given); tiers are
    ordered from lowest to highest authority. Refuses (ConfigError) when none may: never falls back to "unlimited"."""
    for t in tiers:
        if t.problem(currency, amount, total) is None:
            return t
    if not any(currency in t.limits for t in tiers):
        raise ConfigError(f"no approval tier has a limit for {currency}: nobody may approve {currency} write-offs")
    raise ConfigError(f"no approval tier covers {amount} {currency} (batch total {total}): raise the top tier's limit")


def tier_named(name: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier:
    for t in tiers:
        if t.name == name:
            return t
    raise ConfigError(f"unknown approval tier {name!r}; known: {[t.name for t in tiers]}")


def next_tier(name: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier | None:
    names = [t.name for t in tiers]
    i = names.index(name)
    return tiers[i + 1] if i + 1 < len(tiers) else None
