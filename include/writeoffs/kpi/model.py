"""The KPI result: :class:`Kpi` per entity and currency, :class:`BreakdownRow`, :class:`TrendRow`, :class:`KpiReport`
with its JSON form, the notes the report carries (tax note, recovery benchmark) and the amount format ``_fmt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from writeoffs.kpi.period import _PCT, Period, Thresholds
from writeoffs.money import money_str

TAX_NOTE = (
    "Bookkeeping write-offs only. Whether, when and to what extent a write-off is deductible for tax purposes is "
    "for the tax adviser to decide; this listing does not decide deductibility."
)
RECOVERY_BENCHMARK = (
    "Collection specialists report recovering 15-25 % of accounts already marked for write-off; accounts contacted "
    "within 30 days recover 3-4x better."
)


@dataclass(frozen=True, slots=True)
class Kpi:
    """One entity and currency (``currency`` = transaction currency), or an entity's functional total."""

    entity: str
    currency: str
    written_off: Decimal  # gross, write-off entries posted in the period
    reversed: Decimal  # reversals of write-off entries posted in the period
    net_written_off: Decimal
    count: int  # write-offs minus reversals
    sales: Decimal
    open_ar: Decimal
    recoveries: Decimal  # booked in the period
    cumulative_written_off: Decimal  # net, up to period end
    cumulative_recovered: Decimal  # up to period end
    rate_of_sales: Decimal | None
    rate_of_ar: Decimal | None
    class_of_sales: str | None
    class_of_ar: str | None
    recovery_rate: Decimal | None
    cumulative_recovery_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    value: str
    currency: str
    count: int
    amount: Decimal
    functional_currency: str
    functional_amount: Decimal


@dataclass(frozen=True, slots=True)
class TrendRow:
    entity: str
    currency: str
    previous: Decimal
    current: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def direction(self) -> str:
        """Less written off than before is an improvement."""
        if self.change < 0:
            return "improvement"
        if self.change > 0:
            return "deterioration"
        return "no change"

    def sentence(self) -> str:
        c = self.currency
        return f"{_fmt(self.previous)} {c} -> {_fmt(self.current)} {c} = {_fmt(abs(self.change))} {c} {self.direction}"


@dataclass(frozen=True)
class KpiReport:
    period: Period
    ar_basis: str
    thresholds: Thresholds
    by_currency: tuple[Kpi, ...]
    by_entity: tuple[Kpi, ...]  # functional currency
    breakdowns: Mapping[str, tuple[BreakdownRow, ...]]
    previous: Period | None = None
    trend: tuple[TrendRow, ...] = ()
    trend_functional: tuple[TrendRow, ...] = ()
    listing: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    def kpi(self, entity: str, currency: str, *, functional: bool = False) -> Kpi:
        rows = self.by_entity if functional else self.by_currency
        for k in rows:
            if (k.entity, k.currency) == (entity, currency):
                return k
        raise KeyError((entity, currency))

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: money and rates as strings."""
        return _jsonable(
            {
                "period": {
                    "label": self.period.label,
                    "kind": self.period.kind,
                    "from": self.period.start,
                    "to": self.period.end,
                },
                "previous_period": None
                if self.previous is None
                else {"label": self.previous.label, "from": self.previous.start, "to": self.previous.end},
                "ar_basis": self.ar_basis,
                "thresholds": {
                    "excellent_below_percent": self.thresholds.excellent_below,
                    "concerning_above_percent": self.thresholds.concerning_above,
                },
                "by_entity_functional": [asdict(k) for k in self.by_entity],
                "by_entity_currency": [asdict(k) for k in self.by_currency],
                "trend": [{**asdict(t), "change": t.change, "direction": t.direction} for t in self.trend],
                "trend_functional": [
                    {**asdict(t), "change": t.change, "direction": t.direction} for t in self.trend_functional
                ],
                "breakdowns": {k: [asdict(r) for r in v] for k, v in self.breakdowns.items()},
                "recovery_benchmark": RECOVERY_BENCHMARK,
                "tax_note": TAX_NOTE,
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else f"{value.quantize(_PCT, rounding=ROUND_HALF_UP):,}"
