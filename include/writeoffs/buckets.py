"""Aging buckets: one definition shared by aging snapshots, policy reports and KPIs.

Buckets are by days past due as of the business date; ``current`` is everything not yet due (dpd <= 0).
The default: current, 1-30, 31-60, 61-90, 91-120, 121-180, 181-365, 365+.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, literal

from writeoffs.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Bucket:
    label: str
    low: int  # inclusive lower bound of days past due (None-like: -inf for current)
    high: int | None  # inclusive upper bound; None = open-ended


def make_buckets(upper_bounds: Sequence[int] = (30, 60, 90, 120, 180, 365)) -> tuple[Bucket, ...]:
    """Build buckets from ascending upper bounds: (30, 60) -> current, 1-30, 31-60, 60+ ."""
    bounds = list(upper_bounds)
    if not bounds or bounds != sorted(set(bounds)) or bounds[0] < 1:
        raise ConfigError(f"aging bucket bounds must be ascending positive integers, got {list(upper_bounds)}")
    out = [Bucket("current", -(10**9), 0)]
    low = 1
    for hi in bounds:
        out.append(Bucket(f"{low}-{hi}", low, hi))
        low = hi + 1
    out.append(Bucket(f"{bounds[-1]}+", low, None))
    return tuple(out)


DEFAULT_BUCKETS = make_buckets()


def bucket_of(days_past_due: int, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> str:
    for b in buckets:
        if days_past_due >= b.low and (b.high is None or days_past_due <= b.high):
            return b.label
    raise AssertionError("buckets cover every integer")  # make_buckets guarantees it


def bucket_case(dpd: ColumnElement[int], buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> ColumnElement[str]:
    """SQL CASE expression mapping a days-past-due expression to its bucket label (set-wise, no Python)."""
    whens = [(dpd <= b.high, literal(b.label)) for b in buckets if b.high is not None]
    return case(*whens, else_=literal(buckets[-1].label))


def bucket_case_text(dpd: str, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> str:
    """:func:`bucket_case` as SQL text, for the hand-written queries (KPIs, GX validation rules): ``dpd`` is an SQL
    expression of days past due. The same bounds as :func:`bucket_of`, one definition."""

    def quoted(label: str) -> str:
        return "'" + label.replace("'", "''") + "'"

    whens = " ".join(f"WHEN {dpd} <= {b.high} THEN {quoted(b.label)}" for b in buckets if b.high is not None)
    return f"CASE {whens} ELSE {quoted(buckets[-1].label)} END"
