"""Source connectors: files (CSV, XLSX, Parquet), SQL databases and JSON HTTP APIs behind one ``Protocol``.

A source yields :class:`RawChunk` objects: the records as the source printed them (string columns under the
*source's* column names), each with its source row number, so that any later error can name source, file, row and
field. Typing, mapping and validation happen once, vectorised, in :mod:`writeoffs.ingest.validate`, whatever the
source kind. Structural problems that make a whole file unreadable (missing file, empty file, duplicate headers,
wrong encoding, HTTP failure, database down) raise :class:`~writeoffs.errors.InputError` here; malformed single
records (wrong field count, truncated last line) are reported as :class:`BadRecord` so they can be quarantined.

The domain never imports Airflow: SQL sources take a SQLAlchemy URL and HTTP sources a base URL plus auth; the DAG
resolves both from Airflow Connections.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urljoin

from writeoffs.errors import InputError, SourceUnavailable
from writeoffs.ingest.config import SourceConfig, expand
from writeoffs.ingest.records import ascii_compatible, count_lines
from writeoffs.ingest.records import scan as scan_records

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: rate limiting and server-side failures. 4xx other than 429 are our fault.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 100_000


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
        import pyarrow.csv as pcsv

        cfg = self.config
        lines = self._count_lines(path)
        header = self._csv_header(path)
        _check_header(cfg, path.name, header)
        bad: list[BadRecord] = []
        parsed = 0

        spanning: list[int] = []  # bad records whose text runs over a line break: a quote swallowed lines

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

        encoding = cfg.encoding.lower().replace("_", "-")
        # pyarrow strips a UTF-8 BOM itself; only other encodings need transcoding.
        arrow_encoding = "utf8" if encoding in ("utf-8", "utf8", "utf-8-sig") else cfg.encoding
        try:
            reader = pcsv.open_csv(
                path,
                read_options=pcsv.ReadOptions(
                    use_threads=False,  # bad records then carry their line number (see on_invalid)
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
            msg = str(exc)
            m = re.search(r"Row #(\d+)", msg)
            if "UTF8" in msg or "UTF-8" in msg:
                raise _err(
                    cfg,
                    f"not valid {cfg.encoding} text (wrong encoding? set `encoding` in the source config)",
                    file=path.name,
                    row=int(m.group(1)) if m else _first_undecodable_line(path),
                ) from None
            raise _err(cfg, f"unreadable CSV: {msg.splitlines()[0]}", file=path.name) from None

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


class SqlSource:
    """Any database SQLAlchemy can reach; the query is parameterised (``:as_of``) and streamed in chunks."""

    def __init__(self, config: SourceConfig, url: str) -> None:
        self.config = config
        self.name = config.name
        self.url = url
        self._artifacts: list[Artifact] = []

    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts)

    def control(self, as_of: date) -> dict[str, Any] | None:
        return None

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        import pyarrow as pa
        from sqlalchemy import bindparam, create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

        from writeoffs.db.engine import normalise_url

        cfg = self.config
        query = cfg.datasets[dataset].query or ""
        where = f"{dataset} query"
        safe_url = make_url(normalise_url(self.url)).render_as_string(hide_password=True)
        self._artifacts.append(Artifact(dataset, where, hashlib.sha256(query.encode()).hexdigest()))
        stmt = text(query)
        if ":as_of" in query:
            stmt = stmt.bindparams(bindparam("as_of", value=as_of))
        engine = create_engine(normalise_url(self.url), pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=cfg.chunk_rows).execute(stmt)
                columns = list(result.keys())
                _check_header(cfg, where, columns)
                start = 1
                for part in result.partitions(cfg.chunk_rows):
                    rows = [[_text(v, cfg.date_format, cfg.negative_style) for v in r] for r in part]
                    n = len(rows)
                    yield RawChunk(
                        dataset, where, _strings_table(columns, rows), pa.array(range(start, start + n), pa.int64())
                    )
                    start += n
                if start == 1:
                    yield RawChunk(dataset, where, _strings_table(columns, []), pa.array([], pa.int64()))
        except (DBAPIError, SQLAlchemyError) as exc:
            first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            # Cannot connect / connection lost: the database may come back, so the task keeps its retries.
            error = SourceUnavailable if isinstance(exc, (OperationalError, InterfaceError)) else InputError
            raise error(f"source database {safe_url} failed: {first}", source=cfg.name, file=where) from None
        finally:
            engine.dispose()


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """Credentials from the Airflow HTTP connection: basic auth and/or extra headers (e.g. a bearer token)."""

    username: str | None = None
    password: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpOptions:
    """Transport settings from the Airflow HTTP connection's extras: a timeout overriding the source's ``timeout_s``,
    TLS verification (False, or a CA bundle path), proxies per scheme, a client certificate."""

    timeout_s: float | None = None
    verify: bool | str = True
    proxies: Mapping[str, str] = field(default_factory=dict)
    cert: str | tuple[str, str] | None = None


class HttpSource:
    """A paginated JSON API: ``{"data": [...], "next": "<relative url>" | null}`` (or ``?page=k``)."""

    def __init__(
        self, config: SourceConfig, base_url: str, auth: HttpAuth | None = None, options: HttpOptions | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth or HttpAuth()
        self.options = options or HttpOptions()
        self._artifacts: list[Artifact] = []
        self.sleep = time.sleep  # replaced by tests that want to count waits, never mocked away

    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts)

    def control(self, as_of: date) -> dict[str, Any] | None:
        return None

    def _get(self, session: Any, url: str, page: str) -> bytes:
        import requests

        cfg = self.config
        timeout = self.options.timeout_s or cfg.timeout_s
        last = ""
        for attempt in range(cfg.retries + 1):
            try:
                resp = session.get(url, timeout=timeout)
            except requests.Timeout:
                last = f"timed out after {timeout:g} s"
            except requests.ConnectionError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    return resp.content
                if resp.status_code not in RETRY_STATUSES:
                    raise _err(cfg, f"HTTP {resp.status_code} {resp.reason} (not retried)", file=page)
                last = f"HTTP {resp.status_code} {resp.reason}"
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit() and attempt < cfg.retries:
                    self.sleep(min(float(retry_after), 60.0))
                    continue
            if attempt < cfg.retries:
                # Exponential backoff: a struggling server gets more room with each try.
                self.sleep(cfg.backoff_s * (2**attempt))
        raise SourceUnavailable(f"{last} after {cfg.retries + 1} attempt(s)", source=cfg.name, file=page)

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        import pyarrow as pa
        import requests

        cfg = self.config
        ds = cfg.datasets[dataset]
        session = requests.Session()
        if self.auth.username:
            session.auth = (self.auth.username, self.auth.password or "")
        session.headers.update(dict(self.auth.headers))
        session.verify = self.options.verify
        session.proxies.update(dict(self.options.proxies))
        session.cert = self.options.cert
        session.headers.setdefault("Accept", "application/json")
        url = urljoin(self.base_url, expand(ds.endpoint or "", as_of))
        if cfg.page_param:
            url = f"{url}{'&' if '?' in url else '?'}{cfg.page_param}=1"
        seen: set[str] = set()
        start = 1
        page_no = 1
        emitted = False
        try:
            while url:
                if url in seen or len(seen) >= MAX_PAGES:
                    raise _err(cfg, "pagination loops (a page links back to an earlier one)", file=_page_name(url))
                seen.add(url)
                page = _page_name(url)
                body = self._get(session, url, page)
                self._artifacts.append(Artifact(dataset, page, hashlib.sha256(body).hexdigest(), len(body)))
                try:
                    doc = json.loads(body, parse_float=Decimal)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise _err(
                        cfg, f"response is not valid JSON ({exc.__class__.__name__}: {exc})", file=page
                    ) from None
                if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
                    raise _err(cfg, 'response has no "data" list', file=page, fld="data")
                records = doc["data"]
                columns: list[str] = []
                bad: list[BadRecord] = []
                good: list[dict[str, Any]] = []
                nums: list[int] = []
                for i, rec in enumerate(records):
                    if not isinstance(rec, dict):
                        bad.append(
                            BadRecord(
                                start + i,
                                "not_an_object",
                                "record is not a JSON object",
                                json.dumps(rec, default=str)[:500],
                            )
                        )
                        continue
                    for k in rec:
                        if k not in columns:
                            columns.append(k)
                    good.append(rec)
                    nums.append(start + i)
                rows = [[_text(r.get(c), cfg.date_format, cfg.negative_style) for c in columns] for r in good]
                yield RawChunk(dataset, page, _strings_table(columns, rows), pa.array(nums, pa.int64()), bad)
                emitted = True
                start += len(records)
                page_no += 1
                if cfg.page_param:
                    total = doc.get("total_pages")
                    url = (
                        None
                        if not records or (isinstance(total, int) and page_no > total)
                        else (re.sub(rf"{cfg.page_param}=\d+", f"{cfg.page_param}={page_no}", url))
                    )
                else:
                    nxt = doc.get("next")
                    url = urljoin(url, nxt) if nxt else None
        finally:
            session.close()
        if not emitted:
            yield RawChunk(dataset, "", _strings_table([], []), pa.array([], pa.int64()))


def _page_name(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[-1] or url


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


def build_source(
    config: SourceConfig,
    *,
    url: str | None = None,
    auth: HttpAuth | None = None,
    location: str | None = None,
    http: HttpOptions | None = None,
) -> Source:
    """The connector for a configured source. ``url``/``auth`` come from the Airflow connection in the DAG."""
    if config.kind == "file":
        return FileSource(config, location=location)
    if config.kind == "sql":
        target = url or config.url
        if not target:
            raise InputError("no database URL (set conn_id in the DAG or url in the config)", source=config.name)
        return SqlSource(config, expand(target))
    target = url or config.url
    if not target:
        raise InputError("no base URL (set conn_id in the DAG or url in the config)", source=config.name)
    return HttpSource(config, expand(target), auth, http)
