"""What validation produces and keeps track of: the result types, first-failure row bookkeeping, the raw
record kept for the quarantine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.errors import InputError
from writeoffs.ingest.fields import Field

MONEY_TYPE = pa.decimal128(24, 4)
RATE_TYPE = pa.decimal128(30, 10)


@dataclass(frozen=True, slots=True)
class Quarantined:
    dataset: str
    file: str
    row: int | None
    field: str | None
    reason: str
    message: str
    raw: str  # the source record as JSON (source column names)


@dataclass(slots=True)
class Validated:
    good: pa.Table  # canonical typed columns + source_row + source_file
    bad: list[Quarantined]
    read: int  # = good.num_rows + len(bad) + filtered
    filtered: int = 0  # rows the mapping's keep_if left out (counted, neither staged nor quarantined)


@dataclass(frozen=True, slots=True)
class Context:
    """What validation needs to know beyond the chunk: entities and their functional currency."""

    functional: dict[str, str]  # entity code -> functional currency (configured or already in the ledger)
    as_of: date | None = None  # the business date: plausible dates are bounded relative to it


def arrow_type(f: Field) -> pa.DataType:
    return {
        "date": pa.date32(),
        "money": MONEY_TYPE,
        "rate": RATE_TYPE,
        "flag": pa.bool_(),
    }.get(f.kind, pa.string())


class _Rows:
    """First-failure bookkeeping: one reason and field per row."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reason = np.empty(n, dtype=object)
        self.field = np.empty(n, dtype=object)
        self.message = np.empty(n, dtype=object)
        #: Every row with a problem in the field, first failure or not (a filter may only read clean fields).
        self.any_field: dict[str, np.ndarray] = {}

    def flag(
        self,
        mask: pa.Array | np.ndarray,
        field: str,
        reason: str,
        message: str | Callable[[np.ndarray], list[str]],
    ) -> None:
        """Flag rows not flagged yet; ``message`` is one text, or a function of the new rows' indices giving one
        text per row (called only for those rows, so a per-row message costs nothing on clean data)."""
        m = mask if isinstance(mask, np.ndarray) else pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
        if m.any():
            self.any_field[field] = self.any_field[field] | m if field in self.any_field else m.copy()
        new = m & ~self.bad
        if new.any():
            self.reason[new] = reason
            self.field[new] = field
            if callable(message):
                idx = np.flatnonzero(new)
                self.message[idx] = np.array(message(idx), dtype=object)
            else:
                self.message[new] = message
            self.bad |= new


def _clean(col: pa.Array) -> pa.Array:
    """Trimmed text; empty becomes null (exports print null as an empty string)."""
    s = pc.utf8_trim_whitespace(col.cast(pa.string()))
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def _column(table: pa.Table, name: str, n: int) -> pa.Array:
    if name in table.column_names:
        return _clean(table[name].combine_chunks())
    return pa.nulls(n, pa.string())


#: The stored raw record is at most this long (``ingest_quarantine.raw``) and always valid JSON.
RAW_LIMIT = 10_000
_RAW_VALUE_LIMIT = 1_000


def raw_json(record: dict[str, Any]) -> str:
    """The source record as JSON for the quarantine, cut *per value* so the result stays valid JSON.

    Values longer than 1,000 characters keep their start and say how long they were; if the record is still too
    long (a very wide row), only the first 100 characters of each value are kept and ``"_cut": true`` says so.
    """

    def cut(v: Any, limit: int) -> Any:
        if isinstance(v, str) and len(v) > limit:
            return f"{v[:limit]}… ({len(v)} chars)"
        return v

    out = json.dumps({k: cut(v, _RAW_VALUE_LIMIT) for k, v in record.items()}, ensure_ascii=False, default=str)
    if len(out) <= RAW_LIMIT:
        return out
    narrow = {"_cut": True, **{str(k)[:100]: cut(v, 100) for k, v in list(record.items())[:60]}}
    out = json.dumps(narrow, ensure_ascii=False, default=str)
    return out if len(out) <= RAW_LIMIT else json.dumps({"_cut": True, "columns": len(record)})


def first_problem(bad: list[Quarantined], source: str) -> InputError:
    b = min(bad, key=lambda q: (q.dataset, q.file, q.row or 0))
    return InputError(
        f"{len(bad)} bad row(s) and on_bad_rows is 'reject'; first: {b.reason}: {b.message}",
        source=source,
        file=b.file,
        row=b.row,
        field=b.field,
    )


def as_dicts(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()
