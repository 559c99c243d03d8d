"""Approval tiers: who may approve how much, per currency.

Lives apart from the policy loader and the approval/posting code because all three use it: the policy assigns a
tier to each candidate, the approval DAG routes to the tier's approvers, posting re-checks the recorded approval
against the same limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from writeoffs.errors import ConfigError

#: Tier name for write-offs under the policy's small-balance tolerance: posted and audited, no human approval.
AUTO_TIER = "auto"


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    #: Largest single item this tier may approve, per currency; a currency missing here = no limit (top tier).
    limits: Mapping[str, Decimal] = field(default_factory=dict)
    approvers: tuple[str, ...] = ()
    response_timeout_hours: float = 48.0
    on_timeout: str = "expire"  # expire | escalate

    def covers(self, amount: Decimal, currency: str) -> bool:
        limit = self.limits.get(currency)
        return limit is None or amount <= limit

    def limit_for(self, currency: str) -> Decimal | None:
        return self.limits.get(currency)


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("ar_manager", {"USD": Decimal("5000"), "EUR": Decimal("5000"), "GBP": Decimal("4000")}, ("ar_manager",), 48),
    Tier(
        "controller", {"USD": Decimal("50000"), "EUR": Decimal("50000"), "GBP": Decimal("40000")}, ("controller",), 72
    ),
    Tier("cfo", {}, ("cfo",), 120),
)


def tier_for(amount: Decimal, currency: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier:
    """The lowest tier whose limit covers ``amount`` (tiers are ordered from lowest to highest authority)."""
    for t in tiers:
        if t.covers(amount, currency):
            return t
    raise ConfigError(f"no approval tier covers {amount} {currency}: the top tier must have no limit")


def tier_named(name: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier:
    for t in tiers:
        if t.name == name:
            return t
    raise ConfigError(f"unknown approval tier {name!r}; known: {[t.name for t in tiers]}")


def next_tier(name: str, tiers: Sequence[Tier] = DEFAULT_TIERS) -> Tier | None:
    names = [t.name for t in tiers]
    i = names.index(name)
    return tiers[i + 1] if i + 1 < len(tiers) else None
