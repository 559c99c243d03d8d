"""The three source formats an ERP hands us: a CSV export, a SQLite billing database, JSON API pages.

All three are written in one pass over the chunk stream, so memory stays bounded by one chunk (plus one API page
buffer per kind). Layout under ``<out>/``:

- ``erp_export/{invoices,payments,activities}.csv`` + ``control.json`` (ERP headers, US dates, grouped amounts)
- ``source.db`` (tables ``ar_invoices``, ``ar_payments``, ``ar_activities`` with canonical columns)
- ``api/{invoices,payments,activities}/page-0001.json`` ... (canonical fields, chained by ``next``)
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from writeoffs.errors import InputError
from writeoffs.sample.generator import Chunk, SampleSpec, Totals, build_universe, iter_chunks
from writeoffs.sample.render import (
    ACTIVITY_FIELDS,
    ACTIVITY_HEADERS,
    API,
    CSV,
    INVOICE_FIELDS,
    INVOICE_HEADERS,
    PAYMENT_FIELDS,
    PAYMENT_HEADERS,
    SQLITE,
    Renderer,
    Style,
    cents_str,
)

FORMATS: tuple[str, ...] = ("csv", "sqlite", "api")
KINDS: tuple[str, ...] = ("invoices", "payments", "activities")
DEFAULT_PAGE_SIZE = 1_000
FIELDS = {"invoices": INVOICE_FIELDS, "payments": PAYMENT_FIELDS, "activities": ACTIVITY_FIELDS}
HEADERS = {"invoices": INVOICE_HEADERS, "payments": PAYMENT_HEADERS, "activities": ACTIVITY_HEADERS}
SOURCE_TABLES = {"invoices": "ar_invoices", "payments": "ar_payments", "activities": "ar_activities"}
#: SQLite column types of the source database: flags are INTEGER 0/1, everything else TEXT (amounts as exact
#: decimal strings, dates ISO), as in many billing systems that predate decimal support.
_FLAGS = {"disputed", "payment_plan", "bankrupt", "transferred_to_parent"}

Progress = Callable[[str], None]


def parse_formats(text: str) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise InputError(f"unknown format(s) {unknown or text!r}; choose from {', '.join(FORMATS)}", field="formats")
    return wanted


class _CsvSink:
    def __init__(self, out: Path, renderer: Renderer) -> None:
        self.r = renderer
        folder = out / "erp_export"
        folder.mkdir(parents=True, exist_ok=True)
        # utf-8-sig writes the BOM that Excel-minded ERPs put first; QUOTE_ALL quotes every field like the export.
        self.files = {k: open(folder / f"{k}.csv", "w", encoding="utf-8-sig", newline="") for k in KINDS}
        self.writers = {k: csv.writer(f, quoting=csv.QUOTE_ALL) for k, f in self.files.items()}
        for k, w in self.writers.items():
            w.writerow(HEADERS[k])

    def write(self, c: Chunk) -> None:
        self.writers["invoices"].writerows(zip(*self.r.invoices(c, CSV), strict=True))
        self.writers["payments"].writerows(zip(*self.r.payments(c, CSV), strict=True))
        self.writers["activities"].writerows(zip(*self.r.activities(c, CSV), strict=True))

    def close(self, out: Path, spec: SampleSpec, totals: Totals) -> None:
        for f in self.files.values():
            f.close()
        control = {
            "as_of": spec.as_of.isoformat(),
            "invoices": {
                "rows": totals.invoices,
                "amount_total": cents_str(totals.amount),
                "open_balance_total": cents_str(totals.open_balance),
            },
            # A payment is always fully applied, so the sum of Applied Amount over the rows is the cash received.
            "payments": {"rows": totals.payment_rows, "amount_total": cents_str(totals.payment_amount)},
            "activities": {"rows": totals.activities},
        }
        (out / "erp_export" / "control.json").write_text(json.dumps(control, indent=2) + "\n", encoding="utf-8")


class _SqliteSink:
    def __init__(self, out: Path, renderer: Renderer) -> None:
        self.r = renderer
        self.path = out / "source.db"
        self.path.unlink(missing_ok=True)
        self.db = sqlite3.connect(self.path)
        # A generated file: no rollback journal needed, and fsyncs would only slow it down. Deterministic bytes.
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        for kind in KINDS:
            cols = ", ".join(f"{f} {'INTEGER' if f in _FLAGS else 'TEXT'}" for f in FIELDS[kind])
            self.db.execute(f"CREATE TABLE {SOURCE_TABLES[kind]} ({cols})")
        self.sql = {k: f"INSERT INTO {SOURCE_TABLES[k]} VALUES ({', '.join('?' * len(FIELDS[k]))})" for k in KINDS}

    def write(self, c: Chunk, rows: dict[str, list[list[object]]]) -> None:
        for kind in KINDS:
            self.db.executemany(self.sql[kind], zip(*rows[kind], strict=True))

    def close(self) -> None:
        self.db.commit()
        self.db.close()


class _ApiSink:
    """Pages of ``page_size`` rows. Totals are only known at the end, so pages are first written as bare ``data``
    arrays and wrapped with their envelope (page, total_pages, total, next) once the stream is exhausted."""

    def __init__(self, out: Path, page_size: int) -> None:
        self.root = out / "api"
        self.page_size = page_size
        self.buffers: dict[str, list[dict[str, object]]] = {k: [] for k in KINDS}
        self.pages: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.rows: dict[str, int] = dict.fromkeys(KINDS, 0)
        for kind in KINDS:
            folder = self.root / kind
            folder.mkdir(parents=True, exist_ok=True)
            for old in [*folder.glob("page-*.json"), *folder.glob("page-*.part")]:
                old.unlink()  # a previous, larger run must not leave stale pages behind

    def write(self, rows: dict[str, list[list[object]]]) -> None:
        for kind in KINDS:
            names = FIELDS[kind]
            buf = self.buffers[kind]
            buf.extend(dict(zip(names, row, strict=True)) for row in zip(*rows[kind], strict=True))
            while len(buf) >= self.page_size:
                self._flush(kind, buf[: self.page_size])
                del buf[: self.page_size]

    def _flush(self, kind: str, data: list[dict[str, object]]) -> None:
        self.pages[kind] += 1
        self.rows[kind] += len(data)
        part = self.root / kind / f"page-{self.pages[kind]:04d}.part"
        part.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")

    def close(self) -> None:
        for kind in KINDS:
            if self.buffers[kind] or self.pages[kind] == 0:
                self._flush(kind, self.buffers[kind])  # the last (or the only, possibly empty) page
                self.buffers[kind] = []
            n, total = self.pages[kind], self.rows[kind]
            width = max(4, len(str(n)))
            folder = self.root / kind
            for k in range(1, n + 1):
                part = folder / f"page-{k:04d}.part"
                nxt = json.dumps(f"page-{k + 1:0{width}d}.json") if k < n else "null"
                body = part.read_text(encoding="utf-8")
                (folder / f"page-{k:0{width}d}.json").write_text(
                    f'{{"data":{body},"page":{k},"total_pages":{n},"total":{total},"next":{nxt}}}',
                    encoding="utf-8",
                )
                part.unlink()


@dataclass(frozen=True, slots=True)
class GenerateResult:
    spec: SampleSpec
    out: Path
    formats: tuple[str, ...]
    totals: Totals
    seconds: float

    def summary(self) -> str:
        t = self.totals
        return (
            f"generated {t.invoices:,} invoices ({t.customers:,} customers, {t.payment_rows:,} payment rows, "
            f"{t.activities:,} activities, {t.holds:,} holds) as {'+'.join(self.formats)} "
            f"in {self.seconds:.1f} s -> {self.out}"
        )


def write_sample(
    spec: SampleSpec,
    out: Path,
    formats: Iterable[str] = FORMATS,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: Progress | None = None,
) -> GenerateResult:
    """Generate the sample into ``out`` in the chosen formats; overwrites a previous sample there."""
    started = time.perf_counter()
    formats = tuple(formats)
    if page_size < 1:
        raise InputError(f"page size must be positive, got {page_size}", field="page_size")
    out.mkdir(parents=True, exist_ok=True)
    u = build_universe(spec)
    r = Renderer(u)
    totals = Totals()
    csv_sink = _CsvSink(out, r) if "csv" in formats else None
    sqlite_sink = _SqliteSink(out, r) if "sqlite" in formats else None
    api_sink = _ApiSink(out, page_size) if "api" in formats else None
    for chunk in iter_chunks(u, totals):
        if csv_sink:
            csv_sink.write(chunk)
        if sqlite_sink or api_sink:
            # SQLite and the API share the canonical spelling except for flags: render once per style.
            if sqlite_sink:
                sqlite_sink.write(chunk, _canonical(r, chunk, SQLITE))
            if api_sink:
                api_sink.write(_canonical(r, chunk, API))
        if progress:
            progress(f"  chunk {chunk.index + 1}/{len(u.chunks)}: {totals.invoices:,} of {spec.invoices:,} invoices")
    if csv_sink:
        csv_sink.close(out, spec, totals)
    if sqlite_sink:
        sqlite_sink.close()
    if api_sink:
        api_sink.close()
    return GenerateResult(spec, out, formats, totals, time.perf_counter() - started)


def _canonical(r: Renderer, c: Chunk, style: Style) -> dict[str, list[list[object]]]:
    return {"invoices": r.invoices(c, style), "payments": r.payments(c, style), "activities": r.activities(c, style)}
