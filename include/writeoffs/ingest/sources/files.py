"""File exports in a directory: CSV (pyarrow's reader, with an independent record count), XLSX and Parquet."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from writeoffs.errors import InputError
from writeoffs.ingest.config import SourceConfig, expand
from writeoffs.ingest.records import ascii_compatible, count_lines
from writeoffs.ingest.records import scan as scan_records
from writeoffs.ingest.sources.base import (
    Artifact,
    BadRecord,
    RawChunk,
    _check_header,
    _err,
    _strings_table,
    _styled_column,
    _text,
)


class FileSource:
    """CSV / XLSX / Parquet exports in a directory (``location``, may contain ``${ENV}`` and ``{as_of}``)."""

    def __init__(self, config: SourceConfig, *, location: str | Path | None = None) -> None:
        self.config = config
        self.name = config.name
        self._location = location
        self._artifacts: list[Artifact] = []
        #: Physical data records per dataset, counted independently of the parser (CSV files).
        self.records: dict[str, int] = {}

    def _dir(self, as_of: date) -> Path:
        return Path(expand(str(self._location), as_of)) if self._location else self.config.directory(as_of)

    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts)

    def control(self, as_of: date) -> dict[str, Any] | None:
        cfg = self.config
        if not cfg.control_file:
            return None
        path = self._dir(as_of) / expand(cfg.control_file, as_of)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise _err(cfg, "control file not found", file=path.name) from None
        try:
            data = json.loads(raw, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _err(cfg, f"control file is not valid JSON ({exc})", file=path.name) from None
        if not isinstance(data, dict):
            raise _err(cfg, "control file must be a JSON object", file=path.name)
        self._artifacts.append(Artifact("control", path.name, hashlib.sha256(raw).hexdigest(), len(raw)))
        stated = data.get("as_of")
        if cfg.control_as_of_must_match and stated != as_of.isoformat():
            # Loading yesterday's export as today's would age every invoice a day wrong: refuse.
            raise _err(
                cfg, f"control file is for {stated!r}, not the business date {as_of}", file=path.name, fld="as_of"
            )
        return data

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        cfg = self.config
        ds = cfg.datasets[dataset]
        path = self._dir(as_of) / expand(ds.file or "", as_of)
        if not path.is_file():
            if ds.optional:
                return
            raise _err(cfg, f"file not found in {path.parent}", file=path.name)
        self._artifacts.append(Artifact(dataset, path.name, _sha256(path), path.stat().st_size))
        if path.stat().st_size == 0:
            raise _err(cfg, "file is empty (no header row)", file=path.name, row=1)
        reader = {"csv": self._csv, "xlsx": self._xlsx, "parquet": self._parquet}[cfg.format or "csv"]
        yield from reader(dataset, path)

    # -- CSV: pyarrow's C++ reader, all columns as strings; typing happens later, vectorised ------------------
    def _csv(self, dataset: str, path: Path) -> Iterator[RawChunk]:
        if not ascii_compatible(self.config.encoding):
            # UTF-16/32 write delimiters and line breaks as several bytes: the file is transcoded to UTF-8 first
            # (streamed, in a temporary directory) and read like any UTF-8 export; names and rows are unchanged.
            yield from self._csv_transcoded(dataset, path)
            return
        import pyarrow as pa

        cfg = self.config
        lines = self._count_lines(path)
        header = self._csv_header(path)
        _check_header(cfg, path.name, header)
        bad: list[BadRecord] = []
        parsed = 0

        spanning: list[int] = []  # bad records whose text runs over a line break: a quote swallowed lines
        try:
            reader = self._open_csv(path, header, _invalid_row_handler(bad, spanning))
            next_row = 2  # the header is row 1: rows are numbered as a spreadsheet shows them
            reported = 0
            skipped: list[int] = []
            for batch in reader:
                n = batch.num_rows
                parsed += n
                # The reader parses ahead, so a bad record reported now may lie in a later block: every good
                # row is numbered stepping over all bad records seen so far.
                fresh = bad[reported:]
                reported = len(bad)
                skipped = sorted(skipped + [b.row for b in fresh if b.row is not None])
                numbers = _row_numbers(next_row, n, skipped)
                if n:
                    next_row = numbers[-1] + 1
                yield RawChunk(dataset, path.name, pa.Table.from_batches([batch]), pa.array(numbers, pa.int64()), fresh)
            if spanning:
                # A quoted value that runs over line breaks AND leaves its record with the wrong number of fields is
                # a stray quote that swallowed lines, not a value with a line break: nothing after it can be trusted.
                raise _err(
                    cfg,
                    f"line {spanning[0]}: a quoted field runs over line breaks and leaves its record with the wrong"
                    " number of fields (stray quote?); the whole file is rejected",
                    file=path.name,
                    row=spanning[0],
                )
            self.records[dataset] = self.records.get(dataset, 0) + self._check_count(path, lines, parsed + len(bad))
            if len(bad) > reported:
                yield RawChunk(dataset, path.name, _strings_table(header, []), pa.array([], pa.int64()), bad[reported:])
        except pa.ArrowInvalid as exc:
            raise self._unreadable_csv(path, exc) from None

    def _open_csv(self, path: Path, header: list[str], on_invalid: Callable[[Any], str]) -> Any:
        """pyarrow's streaming CSV reader over ``path``: every column as a string, malformed records handed to
        ``on_invalid``."""
        import pyarrow as pa
        import pyarrow.csv as pcsv

        cfg = self.config
        encoding = cfg.encoding.lower().replace("_", "-")
        # pyarrow strips a UTF-8 BOM itself; only other encodings need transcoding.
        arrow_encoding = "utf8" if encoding in ("utf-8", "utf8", "utf-8-sig") else cfg.encoding
        return pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(
                use_threads=False,  # bad records then carry their line number (see _invalid_row_handler)
                column_names=header,
                skip_rows=1,
                block_size=8 << 20,
                encoding=arrow_encoding,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=cfg.delimiter, quote_char=cfg.quotechar, invalid_row_handler=on_invalid
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
            ),
        )

    def _unreadable_csv(self, path: Path, exc: Exception) -> InputError:
        """The error for a file pyarrow's CSV reader refused: undecodable text (naming its line) or unreadable CSV."""
        cfg = self.config
        msg = str(exc)
        m = re.search(r"Row #(\d+)", msg)
        if "UTF8" in msg or "UTF-8" in msg:
            return _err(
                cfg,
                f"not valid {cfg.encoding} text (wrong encoding? set `encoding` in the source config)",
                file=path.name,
                row=int(m.group(1)) if m else _first_undecodable_line(path),
            )
        return _err(cfg, f"unreadable CSV: {msg.splitlines()[0]}", file=path.name)

    def _csv_transcoded(self, dataset: str, path: Path) -> Iterator[RawChunk]:
        import tempfile

        cfg = self.config
        try:
            "\n".encode(cfg.encoding)
        except LookupError:
            raise _err(cfg, f"unknown encoding {cfg.encoding!r}", file=path.name) from None
        with tempfile.TemporaryDirectory(prefix="writeoffs-transcode-") as tmp:
            utf8 = Path(tmp) / path.name
            line = 1
            try:
                with (
                    path.open("r", encoding=cfg.encoding, newline="") as src,
                    utf8.open("w", encoding="utf-8", newline="") as out,
                ):
                    while block := src.read(1 << 20):
                        out.write(block)
                        line += block.count("\n")
            except UnicodeError:
                raise _err(cfg, f"not valid {cfg.encoding} text (wrong encoding?)", file=path.name, row=line) from None
            inner = FileSource(cfg.model_copy(update={"encoding": "utf-8"}), location=self._location)
            yield from inner._csv(dataset, utf8)
            for ds, n in inner.records.items():
                self.records[ds] = self.records.get(ds, 0) + n

    def _count_lines(self, path: Path) -> int:
        """Physical lines of ``path`` less the header, by a memory-speed byte count (:mod:`writeoffs.ingest.records`).

        CR-only line ends and NUL bytes reject the whole file here, naming the physical line, before the parser
        (or PostgreSQL's COPY) sees them."""
        cfg = self.config
        if not ascii_compatible(cfg.encoding):
            raise _err(
                cfg,
                f"encoding {cfg.encoding!r} is not supported for CSV files (only ASCII-compatible encodings such as"
                " utf-8, utf-8-sig, latin-1, cp1252): convert the export to UTF-8",
                file=path.name,
            )
        single = len(cfg.delimiter) == 1 and len(cfg.quotechar) <= 1
        if not (single and cfg.delimiter.isascii() and cfg.quotechar.isascii()):
            raise _err(cfg, "delimiter and quotechar must be single ASCII characters", file=path.name)
        with path.open("rb") as f:
            head = f.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise _err(
                cfg,
                f"the file is UTF-16/32 (it starts with a byte-order mark) but the source is read as {cfg.encoding}:"
                " convert the export to UTF-8, or set encoding: utf-16",
                file=path.name,
                row=1,
            )
        lines = count_lines(path)
        if lines.lone_cr or lines.nul:
            self._strict_scan(path)  # raises with the line, unless the CRs are all inside quoted values
        return lines.records - 1

    def _check_count(self, path: Path, lines: int, parsed: int) -> int:
        """The data records of ``path``: equal to what the parser read (``parsed``), or the file is rejected.

        Fast path: as many records as non-empty lines. Otherwise (blank lines, quoted line breaks, or a quote that
        swallowed part of the file) the exact counts decide, the strict quote-aware scan last."""
        if parsed == lines:
            return lines
        exact = count_lines(path, blank_lines=True).records - 1
        if parsed == exact:
            return exact
        records, quoted_break = self._strict_scan(path)
        if quoted_break is not None and not self.config.newlines_in_values:
            # Fail closed: a stray quote that happens to close on a later line looks exactly like a value with line
            # breaks (the lines in between vanish into one field); only a source known to export them may have them.
            raise _err(
                self.config,
                f"line {quoted_break}: a quoted value runs over a line break (stray quote? if the export really has"
                " multi-line values, set newlines_in_values: true); the whole file is rejected",
                file=path.name,
                row=quoted_break,
            )
        if parsed != records:
            # The independent count disagrees with the parser: something was swallowed or split. Nothing of this
            # file may be trusted (the staging transaction rolls back what was already written).
            raise _err(
                self.config,
                f"the CSV parser read {parsed} record(s) but the file has {records} (quote or line break handling"
                " diverged); the whole file is rejected",
                file=path.name,
            )
        return records

    def _strict_scan(self, path: Path) -> tuple[int, int | None]:
        """Data records by the strict quote-aware scan; a structural problem rejects the file naming its line."""
        cfg = self.config
        found = scan_records(path, delimiter=cfg.delimiter, quotechar=cfg.quotechar or None)
        if found.problem is not None:
            p = found.problem
            where = f"line {p.line}"
            if p.after in (",", ";", "\t", "|") and p.after != cfg.delimiter:
                where += f" (is the delimiter {cfg.delimiter!r} right? fields seem separated by {p.after!r})"
            fld = None
            if p.column is not None:
                header = self._csv_header(path) if p.line > 1 else []
                fld = header[p.column] if p.column < len(header) else None
                where += f", column {fld!r}" if fld else f", column {p.column + 1}"
            raise _err(cfg, f"{where}: {p.message}; the whole file is rejected", file=path.name, row=p.line, fld=fld)
        return max(found.records - 1, 0), found.quoted_break  # the header is not a data record

    def _csv_header(self, path: Path) -> list[str]:
        cfg = self.config
        enc = "utf-8-sig" if cfg.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else cfg.encoding
        with path.open("rb") as f:
            first = f.readline(1 << 20)  # only the header line: a bad byte further down belongs to its own row
        try:
            line = first.decode(enc)
        except UnicodeDecodeError:
            raise _err(
                cfg, f"header is not valid {cfg.encoding} text (wrong encoding?)", file=path.name, row=1
            ) from None
        header = next(csv.reader([line], delimiter=cfg.delimiter, quotechar=cfg.quotechar), None)
        if not header or all(not h.strip() for h in header):
            raise _err(cfg, "file has no header row", file=path.name, row=1)
        return [h.strip() for h in header]

    # -- XLSX: openpyxl streaming reader; typed cells are turned back into text in the configured formats ------
    def _xlsx(self, dataset: str, path: Path) -> Iterator[RawChunk]:
        import pyarrow as pa
        from openpyxl import load_workbook

        cfg = self.config
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise _err(cfg, f"not a readable XLSX workbook ({type(exc).__name__}: {exc})", file=path.name) from None
        try:
            sheet_name = cfg.datasets[dataset].sheet
            ws = wb[sheet_name] if sheet_name else wb.worksheets[0]
            rows = ws.iter_rows(values_only=True)
            first = next(rows, None)
            if first is None or all(v is None for v in first):
                raise _err(cfg, "worksheet has no header row", file=path.name, row=1)
            header = [str(v).strip() if v is not None else "" for v in first]
            _check_header(cfg, path.name, header)
            buf: list[list[Any]] = []
            nums: list[int] = []
            for number, values in enumerate(rows, start=2):
                if all(v is None or v == "" for v in values):
                    continue  # Excel keeps formatted-but-empty rows; they are not records
                buf.append(
                    [_text(v, cfg.date_format, cfg.negative_style) for v in values[: len(header)]]
                    + [None] * (len(header) - len(values))
                )
                nums.append(number)
                if len(buf) >= cfg.chunk_rows:
                    yield RawChunk(dataset, path.name, _strings_table(header, buf), pa.array(nums, pa.int64()))
                    buf, nums = [], []
            yield RawChunk(dataset, path.name, _strings_table(header, buf), pa.array(nums, pa.int64()))
        finally:
            wb.close()

    # -- Parquet: typed columns are rendered as text in the configured formats --------------------------------
    def _parquet(self, dataset: str, path: Path) -> Iterator[RawChunk]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        cfg = self.config
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _err(cfg, f"not a readable Parquet file ({exc})", file=path.name) from None
        header = pf.schema_arrow.names
        _check_header(cfg, path.name, header)
        start = 1
        for batch in pf.iter_batches(batch_size=cfg.chunk_rows):
            cols = {}
            for name, col in zip(batch.schema.names, batch.columns, strict=True):
                if pa.types.is_date(col.type) or pa.types.is_timestamp(col.type):
                    cols[name] = pc.strftime(col, format=cfg.date_format)
                elif pa.types.is_boolean(col.type):
                    cols[name] = pc.if_else(col, "true", "false")
                elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
                    cols[name] = _styled_column(col.cast(pa.string()), cfg.negative_style)
                else:
                    cols[name] = col.cast(pa.string())
            n = batch.num_rows
            yield RawChunk(dataset, path.name, pa.table(cols), pa.array(range(start, start + n), pa.int64()))
            start += n


def _invalid_row_handler(bad: list[BadRecord], spanning: list[int]) -> Callable[[Any], str]:
    """pyarrow's ``invalid_row_handler``: a malformed record is skipped and kept in ``bad`` (to be quarantined);
    one whose text runs over a line break is also noted in ``spanning``."""

    def on_invalid(row: Any) -> str:
        if "\n" in row.text or "\r" in row.text:
            spanning.append(row.number)
        bad.append(
            BadRecord(
                row.number,
                "field_count",
                f"record has {row.actual_columns} field(s), the header has {row.expected_columns}"
                " (wrong delimiter, stray quote or truncated line?)",
                row.text[:500],
            )
        )
        return "skip"

    return on_invalid


def _row_numbers(first: int, n: int, skipped: list[int]) -> list[int]:
    """Row numbers of ``n`` good records starting at ``first``, stepping over the numbers of skipped records."""
    out: list[int] = []
    k = 0
    nxt = first
    while len(out) < n:
        while k < len(skipped) and skipped[k] < nxt:
            k += 1
        if k < len(skipped) and skipped[k] == nxt:
            nxt += 1
            k += 1
            continue
        if k >= len(skipped):
            out.extend(range(nxt, nxt + (n - len(out))))
            break
        span = min(skipped[k] - nxt, n - len(out))
        out.extend(range(nxt, nxt + span))
        nxt += span
    return out


def _first_undecodable_line(path: Path) -> int | None:
    """Line number of the first line that is not UTF-8 (error path only: the fast reader does not say)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
