"""The rules a layer sets: thresholds, collection effort, exclusions, small balances, routes (:class:`Rules`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from writeoffs.policy.schema.fields import (
    CurrencyAmounts,
    _Strict,
)


class Effort(_Strict):
    """Collection effort that must be documented before an uncollectible write-off."""

    min_contact_attempts: int = Field(6, ge=0)
    min_demand_letters: int = Field(2, ge=0)
    min_agency_days: int = Field(60, ge=0)
    #: Balances above this (per currency) also need a legal action on file; currency absent = never required.
    legal_action_required_above: CurrencyAmounts = Field(default_factory=dict)


class Exclusions(_Strict):
    open_dispute: bool = True
    active_payment_plan: bool = True
    #: A regular payment on the invoice within this many days blocks a write-off (the customer is still paying).
    recent_payment_days: int | None = Field(90, ge=0)


class SmallBalance(_Strict):
    #: At or below this open balance (per currency) a write-off is auto-approved (tier ``auto``), still audited.
    tolerance: CurrencyAmounts = Field(default_factory=dict)
    #: ... and written off with reason ``small_balance`` once this many days past due, without collection effort.
    min_days_past_due: int | None = Field(180, ge=0)


class Partial(_Strict):
    #: Write off the open balance of a partly paid invoice (amount < invoice amount)?
    allowed: bool = True
    #: Same question for settlement remainders (partial by nature); on by default.
    settlements: bool = True


class RouteDays(_Strict):
    enabled: bool = True
    min_days_past_due: int = Field(0, ge=0)


class ParentChild(_Strict):
    #: Child-account invoices are written off for their full invoice amount only, never partially.
    child_full_only: bool = True
    #: No write-off of a child invoice whose balance went to the parent if the parent paid any part of it.
    exclude_if_parent_paid_transferred: bool = True


class Rules(_Strict):
    """The rule set that applies to one (entity, segment); every field has the documented default."""

    charge_off_days: int | None = Field(120, ge=0)
    writeoff_days: int = Field(365, ge=0)
    effort: Effort = Effort()
    exclusions: Exclusions = Exclusions()
    small_balance: SmallBalance = SmallBalance()
    partial: Partial = Partial()
    bankruptcy: RouteDays = RouteDays()
    dissolved: RouteDays = RouteDays(min_days_past_due=90)
    dispute_lost: RouteDays = RouteDays()
    settlement: RouteDays = RouteDays()
    #: Days past due after which the claim is time-barred (statute of limitations); null disables the rule.
    statute_days: int | None = Field(None, ge=1)
    parent_child: ParentChild = ParentChild()
    #: A write-off that was reversed puts its invoice on hold: it is not proposed again until a person clears it
    #: (``python -m writeoffs clear-reversal``) or, when set, this many days after the reversal's posting date.
    reversal_cooling_days: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _thresholds(self) -> Rules:
        if self.charge_off_days is not None and self.charge_off_days > self.writeoff_days:
            raise ValueError(
                f"charge_off_days ({self.charge_off_days}) must not exceed writeoff_days ({self.writeoff_days}): "
                "charge-off is the earlier declaration"
            )
        return self
