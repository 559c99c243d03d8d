"""Periods and their arithmetic: :class:`Period` (month, quarter or range; labels, previous period), the write-off
rate :class:`Thresholds`, :func:`percent`, and :func:`months_to_report` (which missed months a catch-up run reports).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

_PCT = Decimal("0.01")
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    kind: str  # month | quarter | range

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"period end {self.end} is before its start {self.start}")

    @classmethod
    def of(cls, start: date, end: date) -> Period:
        """Recognise whole months and quarters (they get labels like 2026-11 and 2026-Q4)."""
        month_end = date(start.year, start.month, calendar.monthrange(start.year, start.month)[1])
        if start.day == 1 and end == month_end:
            return cls(start, end, "month")
        if start.day == 1 and start.month % 3 == 1:
            last = start.month + 2
            if end == date(start.year, last, calendar.monthrange(start.year, last)[1]):
                return cls(start, end, "quarter")
        return cls(start, end, "range")

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        return cls.of(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))

    @property
    def label(self) -> str:
        if self.kind == "month":
            return f"{self.start.year:04d}-{self.start.month:02d}"
        if self.kind == "quarter":
            return f"{self.start.year:04d}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    def previous(self) -> Period:
        if self.kind in ("month", "quarter"):
            months = 1 if self.kind == "month" else 3
            y, m = self.start.year, self.start.month - months
            if m < 1:
                y, m = y - 1, m + 12
            last_m = m + months - 1
            return Period(date(y, m, 1), date(y, last_m, calendar.monthrange(y, last_m)[1]), self.kind)
        days = (self.end - self.start).days + 1
        return Period(self.start - timedelta(days=days), self.start - timedelta(days=1), "range")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Write-off rate classes (percent): below ``excellent_below`` excellent, above ``concerning_above`` concerning."""

    excellent_below: Decimal = Decimal(2)
    concerning_above: Decimal = Decimal(5)

    def classify(self, rate: Decimal | None) -> str | None:
        if rate is None:
            return None
        if rate < self.excellent_below:
            return "excellent"
        if rate > self.concerning_above:
            return "concerning"
        return "acceptable"


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part / whole`` in percent, 2 decimals half-up; None when there is no base."""
    if whole == 0:
        return None
    return (part * _HUNDRED / whole).quantize(_PCT, rounding=ROUND_HALF_UP)


#: How many missed months one run catches up at most (older gaps: run them by hand with ``period``).
CATCH_UP_MONTHS = 12


def months_to_report(target: Period, reported: set[str], *, limit: int = CATCH_UP_MONTHS) -> list[Period]:
    """The month ``target`` and the months missed since the latest one reported before it, oldest first.

    A monthly run that did not happen (scheduler down, a failed month) leaves no report; the next run reports it
    too, from the sub-ledger as of that month's end (movements: nothing depends on what ran on the day). With no
    earlier report at all (a first run) only ``target`` is reported; at most ``limit`` months in one run.
    """
    if target.kind != "month":
        raise ValueError(f"catch-up works on months, not {target.kind!r}")
    earlier = sorted(m for m in reported if m < target.label)
    out = [target]
    if not earlier:
        return out
    p = target.previous()
    while p.label > earlier[-1] and len(out) < limit:
        out.append(p)
        p = p.previous()
    return sorted(out, key=lambda q: q.start)
