"""The validated, hashed policy the pipeline queries (:class:`Policy`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from writeoffs.errors import ConfigError
from writeoffs.money import check_currency
from writeoffs.policy.schema.document import (
    PolicyFile,
    _resolve,
)
from writeoffs.policy.schema.fields import (
    Reason,
)
from writeoffs.policy.schema.rules import Rules
from writeoffs.tiers import AUTO_TIER, Restriction, Tier


@dataclass(frozen=True)
class Policy:
    """A validated, hashed policy. Cheap to query; rule sets per (entity, segment) are resolved once and cached."""

    model: PolicyFile
    text: str
    content_hash: str
    source: str = "<text>"
    _cache: dict[tuple[str, str], Rules] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def tiers(self) -> tuple[Tier, ...]:
        approval = self.model.approval
        top = dict.fromkeys(approval.approval_currencies)  # explicit None: unlimited, for these currencies only
        return tuple(
            Tier(
                name=t.name,
                limits=dict(t.limits) if t is not approval.tiers[-1] else top,
                approvers=tuple(t.approvers),
                response_timeout_hours=t.response_timeout_hours,
                on_timeout=t.on_timeout,
                batch_limits=dict(t.batch_limits) if t is not approval.tiers[-1] else top,
                confirmers=tuple(t.confirmers),
                four_eyes_above=dict(t.four_eyes_above),
                restrictions=tuple(
                    Restriction(r.kind, r.value, dict(r.limits), dict(r.batch_limits)) for r in t.restrictions
                ),
            )
            for t in approval.tiers
        )

    @property
    def auto_tier(self) -> Tier:
        """The small-balance tier (no human approver). Its limit per currency is the largest tolerance any entity or
        segment allows: posting refuses an ``auto`` batch holding anything above it (e.g. a tier flipped by raw
        SQL), while selection applies each invoice's own, possibly smaller, tolerance."""
        limits: dict[str, Decimal] = {}
        for entity in [*self.model.entities, "*"]:
            for segment in [*self.model.segments, "default"]:
                for cur, tol in self.rules_for(entity, segment).small_balance.tolerance.items():
                    limits[cur] = max(limits.get(cur, tol), tol)
        # Small balances are bounded item by item by the tolerance; an auto batch has no total cap (stated, not
        # implied: an explicit None per currency the tolerance names, and nothing for any other currency).
        return Tier(name=AUTO_TIER, limits=limits, approvers=(), batch_limits=dict.fromkeys(limits))

    @property
    def all_tiers(self) -> tuple[Tier, ...]:
        """``auto`` followed by the human tiers: what approval and posting check batches against."""
        return (self.auto_tier, *self.tiers)

    def reason_account(self, reason: str) -> str:
        try:
            return self.model.reasons[Reason(reason)]
        except ValueError:
            raise ConfigError(
                f"unknown write-off reason {reason!r}; the catalogue is {[r.value for r in Reason]}"
            ) from None

    def rules_for(self, entity: str, segment: str = "default") -> Rules:
        key = (entity, segment)
        if key not in self._cache:
            self._cache[key] = _resolve(self.model, entity, segment)
        return self._cache[key]

    def small_balance_tolerance(self, currency: str, entity: str, segment: str = "default") -> Decimal | None:
        return self.rules_for(entity, segment).small_balance.tolerance.get(check_currency(currency))

    def short_hash(self) -> str:
        return self.content_hash[:12]
