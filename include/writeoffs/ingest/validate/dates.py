"""Dates: parsed in the source's format (no silent roll-over of 02/31) and bounded to a plausible range."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.ingest.validate.model import Context, _Rows

if TYPE_CHECKING:
    from writeoffs.ingest.config import SourceConfig


_DATE_PARTS = {"%Y": r"(?P<Y>[0-9]{4})", "%m": r"(?P<m>[0-9]{1,2})", "%d": r"(?P<d>[0-9]{1,2})"}


def _date_regex(fmt: str) -> str | None:
    """A full-match regex with named parts for formats built from %Y, %m, %d and literals; None otherwise."""
    out, i = [], 0
    while i < len(fmt):
        tok = fmt[i : i + 2]
        if tok in _DATE_PARTS:
            out.append(_DATE_PARTS[tok])
            i += 2
        elif fmt[i] == "%":
            return None
        else:
            out.append(re.escape(fmt[i]))
            i += 1
    return "^" + "".join(out) + "$"


def _parse_dates(col: pa.Array, present: pa.Array, name: str, fmt: str, rows: _Rows) -> pa.Array:
    parsed = pc.strptime(col, format=fmt, unit="s", error_is_null=True)
    bad = pc.and_kleene(present, pc.is_null(parsed))
    pattern = _date_regex(fmt)
    if pattern:
        # strptime rolls 02/31 over into March; comparing the printed day with the parsed day catches it.
        parts = pc.extract_regex(col, pattern)
        bad = pc.or_kleene(bad, pc.and_kleene(present, pc.invert(pc.is_valid(parts))))
        if "(?P<d>" in pattern:
            printed = pc.if_else(pc.is_valid(parts), pc.struct_field(parts, "d"), pa.scalar(None, pa.string()))
            day = pc.cast(printed, pa.int64())
            bad = pc.or_kleene(bad, pc.and_kleene(present, pc.not_equal(day, pc.day(parsed))))
    rows.flag(bad, name, "invalid_date", f"{name} is not a valid date in format {fmt}")
    ok = pc.and_kleene(pc.invert(pc.fill_null(bad, False)), present)
    return pc.if_else(ok, pc.cast(parsed, pa.date32()), pa.scalar(None, pa.date32()))


def _plausible_dates(col: pa.Array, name: str, cfg: SourceConfig, ctx: Context, rows: _Rows) -> None:
    """Dates outside ``earliest_date .. as_of + max_days_ahead`` are typos (year 0023, 2925), never aged."""
    earliest = cfg.earliest_date
    outside = pc.less(col, pa.scalar(earliest, pa.date32()))
    latest = None
    if ctx.as_of is not None:
        latest = ctx.as_of + timedelta(days=cfg.max_days_ahead)
        outside = pc.or_kleene(outside, pc.greater(col, pa.scalar(latest, pa.date32())))
    rows.flag(
        outside,
        name,
        "implausible_date",
        f"{name} is outside the plausible range {earliest} .. {latest or 'any'} (earliest_date, max_days_ahead)",
    )
