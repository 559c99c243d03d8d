"""Count the physical records of a delimited file independently of the CSV parser (a fast, vectorised byte scan).

The CSV parser is trusted with the *fields*; this scan is the independent witness for the *records*: a stray
quote that makes the parser swallow the rest of the file, a CR-only line ending that makes the whole file one
line, a NUL byte that some consumers (PostgreSQL's COPY) choke on, are all seen here before anything is parsed,
and the record count found here must equal what the parser then read (``accepted + quarantined``), or the file
is rejected.

Quoting is strict (RFC 4180): a quote opens a field only at its very start (after a delimiter or a line break)
and closes it only right before a delimiter, a line break, the end of the file or a doubled quote (``""``, the
escaped quote). A quoted field may legitimately contain delimiters and line breaks. Anything else - a quote in
the middle of an unquoted field, text right after a closing quote, a quote never closed - is a structural error
of the whole file, reported with the physical line where parsing would diverge.

No per-byte Python: the file is memory-mapped and searched with numpy in blocks; Python only sees the positions
of quotes, line breaks, carriage returns and NUL bytes (a few per record).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BLOCK = 32 << 20
_LF, _CR, _NUL = 10, 13, 0
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the file cannot be split into records, and the physical line (1-based) where it happens."""

    line: int
    message: str
    column: int | None = None  # 0-based field index on that record, when known (NUL bytes)
    after: str | None = None  # the character found right after a closing quote (a delimiter hint)


@dataclass(frozen=True, slots=True)
class Lines:
    """What a memchr-speed pass over the bytes finds (no numpy, no per-byte Python)."""

    records: int  # non-empty physical lines, the header included
    lone_cr: bool  # a carriage return not followed by a line feed somewhere (inside quotes, or CR-only endings)
    nul: bool  # a NUL byte somewhere


_BLANK = re.compile(rb"\n(?=\r?\n)")
_LONE_CR = re.compile(rb"\r(?!\n)")


def count_lines(path: str | Path, *, blank_lines: bool = False) -> Lines:
    """Physical lines of ``path`` (less blank ones when ``blank_lines``): the independent record count when no
    value contains a line break.

    Single-byte ``bytes.count`` runs at memory speed; a carriage return is looked for with ``memchr`` (``in``) and,
    only where there is one, a lone one (not followed by a line feed) with one regex pass; blank lines only when
    asked. Blocks are cut right after a line feed, so a pattern can only straddle two blocks at the very start of a
    block, which is carried over explicitly (a carriage return ends a block only at the end of the file, where it
    is lone).
    """
    lf = blank = 0
    lone_cr = nul = False
    size = 0
    prev_ended_lf = True  # the start of the file behaves like the start of a line
    last = b""
    with open(path, "rb") as f:
        first = True
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            if not block.endswith(b"\n"):
                block += f.readline()
            if first and block.startswith(_UTF8_BOM):
                block = block[3:]
            first = False
            size += len(block)
            lf += block.count(b"\n")
            if not lone_cr and b"\r" in block:
                lone_cr = _LONE_CR.search(block) is not None
            nul = nul or b"\x00" in block
            if blank_lines:
                blank += len(_BLANK.findall(block))
                if prev_ended_lf and (block.startswith(b"\n") or block.startswith(b"\r\n")):
                    blank += 1
            prev_ended_lf = block.endswith(b"\n")
            last = block[-1:]
    lines = lf + (1 if size and last != b"\n" else 0)
    return Lines(records=lines - blank, lone_cr=lone_cr, nul=nul)


@dataclass(frozen=True, slots=True)
class Scan:
    records: int  # non-empty records, the header included (blank lines are not records, as for the parser)
    problem: Problem | None
    quoted_break: int | None = None  # line where the first quoted value that contains a line break opens


def scan(path: str | Path, *, delimiter: str, quotechar: str | None) -> Scan:
    """Count records of ``path`` with strict quoting; report the first structural problem, if any."""
    data = np.memmap(path, dtype=np.uint8, mode="r") if Path(path).stat().st_size else np.zeros(0, np.uint8)
    n = int(data.size)
    start = 3 if data[:3].tobytes() == _UTF8_BOM else 0
    d = ord(delimiter)
    q = ord(quotechar) if quotechar else -1
    pos, val = _special_bytes(data, n, q)
    quotes = pos[val == q] if q >= 0 else np.zeros(0, np.int64)
    lfs = pos[val == _LF]

    def line_of(p: int) -> int:
        return int(np.searchsorted(lfs, p, side="left")) + 1

    def byte(p: np.ndarray) -> np.ndarray:
        return np.asarray(data[np.clip(p, 0, max(n - 1, 0))]) if n else np.zeros(0, np.uint8)

    problems: list[tuple[int, Problem]] = []  # (byte position, problem): the earliest wins

    if len(quotes):
        problems += _quote_problems(quotes, start, n, d, q, quotechar, line_of, byte)

    # Line breaks outside quotes end records; inside quotes they belong to the value.
    quotes_before = np.searchsorted(quotes, lfs)
    ends = lfs[quotes_before % 2 == 0]
    inside = np.flatnonzero(quotes_before % 2 == 1)
    quoted_break = line_of(int(quotes[quotes_before[inside[0]] - 1])) if len(inside) else None
    crs = pos[val == _CR]
    if len(crs):
        problems += _lone_cr_problems(crs, quotes, n, line_of, byte)
    nuls = pos[val == _NUL]
    if len(nuls):
        p = int(nuls[0])
        problems.append((p, Problem(line_of(p), "NUL byte in the data", _column_at(data, start, ends, p, d, q))))

    starts = np.concatenate(([start], ends + 1))
    stops = np.concatenate((ends, [n]))
    length = stops - starts
    empty = (length <= 0) | ((length == 1) & (byte(np.maximum(stops - 1, 0)) == _CR))
    records = int(np.count_nonzero(~empty))
    first = min(problems, key=lambda t: t[0])[1] if problems else None
    return Scan(records, first, quoted_break)


def _special_bytes(data: np.ndarray, n: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the bytes that matter to the scan (LF, CR, NUL and the quote ``q``), block by block."""
    special = np.zeros(256, dtype=bool)
    special[[_LF, _CR, _NUL]] = True
    if q >= 0:
        special[q] = True
    pos_parts, val_parts = [], []
    for off in range(0, n, _BLOCK):
        blk = data[off : off + _BLOCK]
        p = np.flatnonzero(special[blk])
        pos_parts.append(p + off)
        val_parts.append(blk[p])
    pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
    val = np.concatenate(val_parts) if val_parts else np.zeros(0, np.uint8)
    return pos, val


def _quote_problems(
    quotes: np.ndarray,
    start: int,
    n: int,
    d: int,
    q: int,
    quotechar: str | None,
    line_of: Callable[[int], int],
    byte: Callable[[np.ndarray], np.ndarray],
) -> list[tuple[int, Problem]]:
    """Strict quoting: the first quote opening inside a field, the first closing before a field's end, and a quote
    never closed, each with its byte position."""
    problems: list[tuple[int, Problem]] = []
    k = np.arange(len(quotes))
    opening = k % 2 == 0
    prev_pos = quotes - 1
    prev = byte(prev_pos)
    at_start = (prev_pos < start) | np.isin(prev, [d, _LF, _CR]) | (prev == q)
    bad_open = opening & ~at_start
    next_pos = quotes + 1
    nxt = byte(next_pos)
    at_end = (next_pos >= n) | np.isin(nxt, [d, _LF, _CR]) | (nxt == q)
    bad_close = ~opening & ~at_end
    if bad_open.any():
        i = int(np.flatnonzero(bad_open)[0])
        problems.append(
            (
                int(quotes[i]),
                Problem(
                    line_of(int(quotes[i])),
                    f"stray quote {quotechar} inside an unquoted field (strict quoting: a quote may only open a"
                    " field at its start)",
                ),
            )
        )
    if bad_close.any():
        i = int(np.flatnonzero(bad_close)[0])
        opened = int(quotes[i - 1])
        after = chr(int(nxt[i])) if int(nxt[i]) < 128 else None
        problems.append(
            (
                opened,
                Problem(
                    line_of(opened),
                    f"quoted field opened on line {line_of(opened)} is not closed where a field ends"
                    f" ({after!r} follows its closing quote on line {line_of(int(quotes[i]))}): stray quote?",
                    after=after,
                ),
            )
        )
    if len(quotes) % 2:
        opened = int(quotes[-1])
        problems.append(
            (opened, Problem(line_of(opened), f"quoted field opened on line {line_of(opened)} is never closed"))
        )
    return problems


def _lone_cr_problems(
    crs: np.ndarray,
    quotes: np.ndarray,
    n: int,
    line_of: Callable[[int], int],
    byte: Callable[[np.ndarray], np.ndarray],
) -> list[tuple[int, Problem]]:
    """The first carriage return outside quotes not followed by a line feed, with its byte position."""
    problems: list[tuple[int, Problem]] = []
    outside = np.searchsorted(quotes, crs) % 2 == 0
    lone = outside & (byte(crs + 1) != _LF) & (crs + 1 < n)
    lone |= outside & (crs + 1 >= n) & (n > 0)  # a CR as the very last byte
    if lone.any():
        p = int(crs[np.flatnonzero(lone)[0]])
        problems.append(
            (
                p,
                Problem(
                    line_of(p),
                    "carriage return without line feed (CR-only line endings?): save the export with LF or"
                    " CRLF line endings",
                ),
            )
        )
    return problems


def _column_at(data: np.ndarray, start: int, ends: np.ndarray, p: int, d: int, q: int) -> int:
    """0-based field index of byte ``p`` in its record (error path only: a Python pass over one record)."""
    i = int(np.searchsorted(ends, p))
    rec_start = start if i == 0 else int(ends[i - 1]) + 1
    field, quoted = 0, False
    for b in data[rec_start:p].tobytes():
        if b == q:
            quoted = not quoted
        elif b == d and not quoted:
            field += 1
    return field


def ascii_compatible(encoding: str) -> bool:
    """True when the encoding writes line breaks, quotes and delimiters as their single ASCII bytes."""
    try:
        return '\n\r",;|\t'.encode(encoding).removeprefix(_UTF8_BOM) == b'\n\r",;|\t'
    except (LookupError, UnicodeError):
        return False
