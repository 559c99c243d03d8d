"""Approval tiers: who may approve how much, per currency — item by item and per batch.

Lives apart from the policy loader and the approval/posting code because all three use it: the policy assigns a
tier to each candidate, the approval DAG routes to the tier's approvers, posting re-checks the recorded approval
against the same limits.

Limits fail closed: a currency a tier does not list is *refused* by that tier, never "unlimited". Only an explicit
``None`` value means unlimited, and the policy allows that on the top tier only, for the currencies the policy
names (``approval.currencies``). A 10,000,000 CHF write-off under a policy that never mentions CHF can be approved
by nobody.

Within a tier, narrower limits may be set per reason, per customer segment and per user (:class:`Restriction`);
where several apply, the most restrictive wins (every applicable limit must hold). Four eyes: above a tier's
``four_eyes_above`` amount (per currency; a currency it does not list: at every amount) the confirm step must be
answered by someone other than the approver. The rule lives here; the ledger (:mod:`writeoffs.approvals`) applies it
when a decision is recorded and again at posting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from writeoffs.errors import ConfigError
from writeoffs.identity import normalized as _norm

#: Tier name for write-offs under the policy's small-balance tolerance: posted and audited, no human approval.
AUTO_TIER = "auto"

#: The approval machinery itself (the HITL DAG): the only actor that may record a timeout (``expired``) or an
#: escalation, and never a granting or rejecting decision.
SYSTEM_ACTOR = "airflow:writeoff_approval"

#: Limits per currency: ``None`` = explicitly unlimited; a currency that is not a key = refused.
Limits = Mapping[str, Decimal | None]


#: What the limit rules look at for one item of a batch: its amount, reason code and customer segment.
Item = tuple[Decimal, str, str]

RESTRICTION_KINDS = ("reason", "segment", "user")


@dataclass(frozen=True, slots=True)
class Restriction:
    """A narrower limit inside a tier for one reason, customer segment or user (``kind``/``value``).

    For a reason or segment: the items of the batch with that reason/segment may not exceed ``limits`` item by item,
    nor ``batch_limits`` together. For a user: that user's decisions are held to these limits over the whole batch.
    A currency the restriction does not list is not narrowed by it (the tier's own limit, which fails closed, still
    applies)."""

    kind: str
    value: str
    limits: Limits = field(default_factory=dict)
    batch_limits: Limits = field(default_factory=dict)

    def applies_to(self, items: Sequence[Item], user: str | None) -> list[Item]:
        if self.kind == "reason":
            return [i for i in items if i[1] == self.value]
        if self.kind == "segment":
            return [i for i in items if i[2] == self.value]
        return list(items) if user is not None and _norm(user) == _norm(self.value) else []

    def problem(self, tier: str, currency: str, items: Sequence[Item], user: str | None) -> str | None:
        hit = self.applies_to(items, user)
        if not hit:
            return None
        label = f"{self.kind} {self.value!r}"
        biggest = max(a for a, _, _ in hit)
        limit = self.limits.get(currency)
        if limit is not None and biggest > limit:
            return (
                f"largest item {_text(biggest)} {currency} for {label} exceeds tier {tier!r} limit for {label} "
                f"{_text(limit)} {currency}"
            )
        total = sum((a for a, _, _ in hit), Decimal(0))
        limit = self.batch_limits.get(currency)
        if limit is not None and total > limit:
            return (
                f"total {_text(total)} {currency} for {label} exceeds tier {tier!r} batch limit for {label} "
                f"{_text(limit)} {currency}"
            )
        return None


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
    #: Who may answer the confirm step; empty: the approvers.
    confirmers: tuple[str, ...] = ()
    #: Batch total above which the confirm step needs a different person than the approve step, per currency. A
    #: currency not listed: four eyes at every amount (fail closed).
    four_eyes_above: Mapping[str, Decimal] = field(default_factory=dict)
    #: Narrower limits per reason, segment or user; the most restrictive applicable one wins.
    restrictions: tuple[Restriction, ...] = ()

    @property
    def reminder_before(self) -> timedelta:
        """How long before a request's deadline its people are reminded: a quarter of the response time."""
        return timedelta(hours=self.response_timeout_hours / 4)

    def answerers(self, step: str) -> tuple[str, ...]:
        """Who may answer ``step`` (``approve`` or ``confirm``) of this tier's batches."""
        return self.approvers if step == "approve" else (self.confirmers or self.approvers)

    def four_eyes(self, currency: str, total: Decimal | None) -> bool:
        """Must the confirm step be answered by someone other than the approver, for a batch of ``total``?"""
        threshold = self.four_eyes_above.get(currency)
        return threshold is None or (total is not None and total > threshold)

    def problem_for(self, currency: str, items: Iterable[Item], user: str | None = None) -> str | None:
        """Why ``user`` may not grant a batch of ``items`` in this tier — or None. The tier's item and batch limits
        (:meth:`problem`) and every applicable restriction must hold: the most restrictive wins. ``user=None`` asks
        whether *some* answerer of the tier could (routing: nobody is asked to approve what they may not)."""
        items = list(items)
        if not items:
            return None
        amounts = [a for a, _, _ in items]
        base = self.problem(currency, max(amounts), sum(amounts, Decimal(0)))
        if base is not None:
            return base
        if user is None:
            people = self.approvers or ("",)
            problems = [self.problem_for(currency, items, p) for p in people]
            return None if any(p is None for p in problems) else problems[0]
        for r in self.restrictions:
            found = r.problem(self.name, currency, items, user)
            if found is not None:
                suffix = "" if r.kind == "user" else "; escalate to a higher tier"
                return found + suffix
        return None

    def sets_limits(self, currency: str) -> bool:
        """Whether the policy sets both an item and a batch limit for ``currency`` in this tier (without both, nobody
        may approve in that currency: :meth:`problem`)."""
        return currency in self.limits and currency in self.batch_limits

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
        if not self.sets_limits(currency):
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


def tier_for(amount: Decimal, currency: str, tiers: Sequence[Tier], total: Decimal | None = None) -> Tier:
    """The lowest tier that may approve an item of ``amount`` (in a batch totalling ``total``, if given); tiers are
    ordered from lowest to highest authority. Refuses (ConfigError) when none may: never falls back to "unlimited"."""
    for t in tiers:
        if t.problem(currency, amount, total) is None:
            return t
    if not any(currency in t.limits for t in tiers):
        raise ConfigError(f"no approval tier has a limit for {currency}: nobody may approve {currency} write-offs")
    raise ConfigError(f"no approval tier covers {amount} {currency} (batch total {total}): raise the top tier's limit")


def tier_named(name: str, tiers: Sequence[Tier]) -> Tier:
    for t in tiers:
        if t.name == name:
            return t
    raise ConfigError(f"unknown approval tier {name!r}; known: {[t.name for t in tiers]}")


def next_tier(name: str, tiers: Sequence[Tier]) -> Tier | None:
    names = [t.name for t in tiers]
    i = names.index(name)
    return tiers[i + 1] if i + 1 < len(tiers) else None
