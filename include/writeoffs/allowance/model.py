"""What an allowance estimate returns (per bucket, per entity and currency, per date) and its entry key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from writeoffs.accounting import keys
from writeoffs.money import money_str

ENTRY_PREFIX = keys.ALLOWANCE_PREFIX
SOURCE_TYPE = "allowance"


@dataclass(frozen=True, slots=True)
class BucketEstimate:
    bucket: str
    open_balance: Decimal
    loss_rate: Decimal  # fraction
    required: Decimal


@dataclass(frozen=True, slots=True)
class PairResult:
    """One entity and currency: what is required, what the books held, what was posted."""

    entity: str
    currency: str
    functional_currency: str
    status: str  # posted | no_change | already
    required: Decimal
    buckets: tuple[BucketEstimate, ...]
    balance_before: Decimal | None = None  # GL allowance credit balance before this run (transaction currency)
    adjustment: Decimal | None = None  # + increase (Dr expense / Cr allowance), - release
    functional_required: Decimal | None = None
    functional_adjustment: Decimal | None = None
    functional_unadjusted: Decimal = Decimal(0)
    entry_key: str | None = None
    entry_id: int | None = None

    def summary(self) -> dict[str, Any]:
        def s(v: Decimal | None) -> str | None:
            return None if v is None else money_str(v)

        return {
            "entity": self.entity,
            "currency": self.currency,
            "functional_currency": self.functional_currency,
            "status": self.status,
            "required": s(self.required),
            "balance_before": s(self.balance_before),
            "adjustment": s(self.adjustment),
            "functional_required": s(self.functional_required),
            "functional_adjustment": s(self.functional_adjustment),
            "functional_unadjusted": s(self.functional_unadjusted),
            "entry_key": self.entry_key,
            "entry_id": self.entry_id,
            "buckets": {
                b.bucket: {
                    "open_balance": s(b.open_balance),
                    "loss_rate": format(b.loss_rate, "f"),
                    "required": s(b.required),
                }
                for b in self.buckets
            },
        }


@dataclass(frozen=True, slots=True)
class AllowanceResult:
    as_of: date
    config_version: str
    pairs: tuple[PairResult, ...]

    @property
    def posted(self) -> list[PairResult]:
        return [p for p in self.pairs if p.status == "posted"]

    def summary(self) -> dict[str, Any]:
        """XCom/JSON-safe (money as strings)."""
        return {
            "as_of": self.as_of.isoformat(),
            "config_version": self.config_version,
            "entries_posted": len(self.posted),
            "pairs": [p.summary() for p in self.pairs],
        }


def entry_key(entity: str, currency: str, as_of: date) -> str:
    return keys.allowance(entity, currency, as_of)


@dataclass(frozen=True, slots=True)
class _PeriodProbe:
    """What :func:`ledger.check_periods_open` needs, before any entry exists."""

    entity: str
    posting_date: date
