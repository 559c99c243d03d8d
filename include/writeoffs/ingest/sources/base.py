"""What every source hands over (:class:`RawChunk`, :class:`BadRecord`, :class:`Artifact`), the
:class:`Source` protocol, and the helpers that print typed values as the text a source's export would show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from writeoffs.errors import InputError
from writeoffs.ingest.config import SourceConfig

if TYPE_CHECKING:
    import pyarrow as pa


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record the source could not even split into fields (quarantined or rejecting the batch)."""

    row: int | None
    reason: str
    message: str
    raw: str


@dataclass(slots=True)
class RawChunk:
    dataset: str
    file: str
    table: pa.Table  # string columns, source column names
    rows: pa.Array  # int64 source row numbers, aligned with ``table``
    bad: list[BadRecord] = field(default_factory=list)


@dataclass(slots=True)
class Artifact:
    """What was read, for lineage and the audit row: file name, checksum and size (or page / query)."""

    dataset: str
    name: str
    sha256: str | None = None
    bytes: int | None = None


@runtime_checkable
class Source(Protocol):
    """Anything that yields invoices, payments and collection activities (holds travel as invoice flags)."""

    name: str
    config: SourceConfig

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        """Yield the dataset in chunks. Raises InputError for unreadable input."""
        ...

    def artifacts(self) -> list[Artifact]:
        """Files/pages/queries read so far, with checksums where there is a file."""
        ...

    def control(self, as_of: date) -> dict[str, Any] | None:
        """Control totals shipped with the data, if the source has any."""
        ...


def _err(cfg: SourceConfig, message: str, *, file: str | None = None, row: int | None = None, fld: str | None = None):
    return InputError(message, source=cfg.name, file=file, row=row, field=fld)


def _strings_table(columns: list[str], rows: list[list[Any]]) -> pa.Table:
    import pyarrow as pa

    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.table({c: pa.array(list(v), type=pa.string()) for c, v in zip(columns, cols, strict=True)})


def _text(value: Any, date_format: str, negative_style: str = "leading_minus") -> str | None:
    """A typed value from a database/JSON/Excel as text the mapping can parse like any export (never via float).

    Dates are printed in the source's ``date_format`` and negative numbers in its ``negative_style``: the typed
    value is then read by the same parser as the text of a CSV export of that source."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _styled(format(value, "f"), negative_style)
    if isinstance(value, datetime):
        return value.date().strftime(date_format)
    if isinstance(value, date):
        return value.strftime(date_format)
    if isinstance(value, float):
        # A binary float cannot hold most cents exactly; repr is the shortest text that round-trips, i.e. what a
        # spreadsheet showed. Accepted for Excel/JSON numbers; documented in docs/ingestion.md.
        return _styled(repr(value), negative_style)
    if isinstance(value, int):
        return _styled(str(value), negative_style)
    return str(value)


def _styled(number: str, negative_style: str) -> str:
    if not number.startswith("-") or negative_style == "leading_minus":
        return number
    return f"({number[1:]})" if negative_style == "parentheses" else f"{number[1:]}-"


def _styled_column(col: pa.Array, negative_style: str) -> pa.Array:
    """:func:`_styled` for a column of numbers printed by Arrow (Parquet), vectorised."""
    import pyarrow.compute as pc

    if negative_style == "leading_minus":
        return col
    negative = pc.starts_with(col, "-")
    body = pc.utf8_slice_codeunits(col, 1)
    styled = (
        pc.binary_join_element_wise("(", body, ")", "")
        if negative_style == "parentheses"
        else pc.binary_join_element_wise(body, "-", "")
    )
    return pc.if_else(pc.fill_null(negative, False), styled, col)


def _check_header(cfg: SourceConfig, file: str, header: list[str]) -> None:
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise _err(cfg, f"duplicate column header {col!r}", file=file, row=1, fld=col)
        seen.add(col)
