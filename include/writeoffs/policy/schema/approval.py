"""The approval tiers as the file declares them (:class:`Approval`), validated across tiers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from writeoffs.policy.schema.fields import (
    CurrencyAmounts,
    Reason,
    _Strict,
)
from writeoffs.tiers import AUTO_TIER


class RestrictionSpec(_Strict):
    """A narrower limit inside a tier for exactly one reason, customer segment or user."""

    reason: Reason | None = None
    segment: str | None = Field(None, min_length=1, max_length=32)
    user: str | None = Field(None, min_length=1, max_length=64)
    limits: CurrencyAmounts = Field(default_factory=dict)
    batch_limits: CurrencyAmounts = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_selector(self) -> RestrictionSpec:
        chosen = [k for k in ("reason", "segment", "user") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a restriction names exactly one of reason, segment or user (got {chosen or 'none'})")
        if not self.limits and not self.batch_limits:
            raise ValueError("a restriction needs limits or batch_limits")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("reason", "segment", "user") if getattr(self, k) is not None)

    @property
    def value(self) -> str:
        v = getattr(self, self.kind)
        return v.value if isinstance(v, Reason) else str(v)


class TierSpec(_Strict):
    name: str = Field(min_length=1, max_length=24)
    #: Largest single item per currency. Required for every currency of ``approval.currencies`` on every tier but
    #: the top one (which has none: unlimited, for those currencies only).
    limits: CurrencyAmounts = Field(default_factory=dict)
    #: Largest batch total per currency (the sum of what is approved together); same rule as ``limits``.
    batch_limits: CurrencyAmounts = Field(default_factory=dict)
    approvers: list[str] = Field(min_length=1)
    response_timeout_hours: float = Field(48, gt=0)
    on_timeout: Literal["expire", "escalate"] = "expire"
    #: Who may answer the confirm step (default: the approvers).
    confirmers: list[str] = Field(default_factory=list)
    #: Four eyes: a batch totalling more than this (per currency) must be confirmed by someone other than its
    #: approver. A currency not listed: four eyes at every amount.
    four_eyes_above: CurrencyAmounts = Field(default_factory=dict)
    #: Narrower limits per reason, customer segment or user; the most restrictive applicable limit wins.
    restrictions: list[RestrictionSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _not_auto(cls, v: str) -> str:
        if v == AUTO_TIER:
            raise ValueError(f"{AUTO_TIER!r} is reserved for small balances under the tolerance")
        return v


def _check_four_eyes_and_restrictions(t: TierSpec, currencies: set[str], *, is_top: bool) -> None:
    from writeoffs.identity import normalized

    named = [("four_eyes_above", t.four_eyes_above)]
    named += [(f"restrictions[{i}]", {**r.limits, **r.batch_limits}) for i, r in enumerate(t.restrictions)]
    for kind, amounts in named:
        extra = sorted(set(amounts) - currencies)
        if extra:
            raise ValueError(f"tier {t.name!r} {kind} name {', '.join(extra)}, not in approval.currencies")
    confirmers = {normalized(c) for c in (t.confirmers or t.approvers)}
    # Four eyes can apply unless every currency's threshold is at or above the tier's batch limit.
    can_apply = is_top or any(
        cur not in t.four_eyes_above or t.four_eyes_above[cur] < t.batch_limits.get(cur, Decimal(0))
        for cur in currencies
    )
    if can_apply:
        alone = sorted(a for a in t.approvers if not confirmers - {normalized(a)})
        if alone:
            raise ValueError(
                f"tier {t.name!r}: four eyes applies (four_eyes_above) but nobody but {', '.join(alone)} may confirm "
                f"what {', '.join(alone)} approved; add someone else to confirmers"
            )
    people = {normalized(p) for p in (*t.approvers, *(t.confirmers or ()))}
    for i, r in enumerate(t.restrictions):
        if r.user is not None and normalized(r.user) not in people:
            raise ValueError(
                f"tier {t.name!r} restrictions[{i}]: user {r.user!r} is not an approver or confirmer of the tier"
            )


class Approval(_Strict):
    #: The only currencies write-offs may be approved in. Anything else is refused by every tier (fail closed).
    #: Default: the currencies the lower tiers set limits for.
    currencies: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(default_factory=list)
    tiers: list[TierSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Approval:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        top, lower = self.tiers[-1], self.tiers[:-1]
        if top.limits or top.batch_limits:
            raise ValueError(
                f"the top tier ({names[-1]}) must have no limits: it approves any amount in approval.currencies"
            )
        if top.on_timeout == "escalate":
            raise ValueError(f"the top tier ({names[-1]}) cannot escalate: there is no higher tier")
        currencies = set(self.currencies) or {c for t in lower for c in (*t.limits, *t.batch_limits)}
        if not currencies:
            raise ValueError("approval.currencies is empty: name the currencies write-offs may be approved in")
        for t in lower:
            for kind in ("limits", "batch_limits"):
                have = getattr(t, kind)
                missing, extra = sorted(currencies - set(have)), sorted(set(have) - currencies)
                if missing:
                    raise ValueError(
                        f"tier {t.name!r} has no {kind} for {', '.join(missing)}: a currency without a limit is "
                        "refused, not unlimited; set one (or remove the currency from approval.currencies)"
                    )
                if extra:
                    raise ValueError(f"tier {t.name!r} {kind} name {', '.join(extra)}, not in approval.currencies")
            for cur in sorted(currencies):
                if t.batch_limits[cur] < t.limits[cur]:
                    raise ValueError(
                        f"tier {t.name!r}: batch limit {t.batch_limits[cur]} {cur} is below its item limit "
                        f"{t.limits[cur]} {cur}"
                    )
        for kind in ("limits", "batch_limits"):
            for cur in sorted(currencies):
                seen = [getattr(t, kind)[cur] for t in lower]
                if seen != sorted(seen):
                    raise ValueError(f"{kind} for {cur} must increase from lower to higher tiers, got {seen}")
        for t in self.tiers:
            _check_four_eyes_and_restrictions(t, currencies, is_top=t is top)
        return self

    @property
    def approval_currencies(self) -> tuple[str, ...]:
        lower = self.tiers[:-1]
        return tuple(sorted(set(self.currencies) or {c for t in lower for c in (*t.limits, *t.batch_limits)}))
