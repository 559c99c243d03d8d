"""GL adapters: where posted write-off entries go besides the built-in SQL ledger.

The built-in SQL ledger is the system of record (entries are posted there by :mod:`writeoffs.posting`, always).
An external GL that imports journal files gets :class:`JournalImportFile`: one CSV per batch in the generic layout
below, plus a ``.sha256`` file beside it (``sha256sum -c`` format). Files are written atomically (temporary file in
the same directory, fsync, rename) and are byte-for-byte reproducible: same batch, same bytes (no timestamps, stable
order, amounts at the currency's minor unit), so a re-run overwrites a file with identical content and an importer
can de-duplicate on ``entry_key``.

Layout (header row, comma-separated, UTF-8, ``\\n`` line ends, one row per journal line):

``entry_key, entity, posting_date, period, line_no, account, currency, debit, credit, functional_currency,
functional_debit, functional_credit, invoice_ref, memo``

Only the batch's write-off entries are exported; reversals are separate documents (:func:`export_entries`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, func, select

from writeoffs.db.schema import invoices, journal_entries, journal_lines, writeoff_batches
from writeoffs.errors import WriteoffError
from writeoffs.money import round_money
from writeoffs.safe_text import csv_writer

COLUMNS = (
    "entry_key",
    "entity",
    "posting_date",
    "period",
    "line_no",
    "account",
    "currency",
    "debit",
    "credit",
    "functional_currency",
    "functional_debit",
    "functional_credit",
    "invoice_ref",
    "memo",
)


@dataclass(frozen=True, slots=True)
class PublishResult:
    adapter: str
    batch_id: int
    entries: int
    lines: int
    path: str | None = None
    sha256: str | None = None


class GLAdapter(Protocol):
    """Publishes a posted batch to a general ledger."""

    name: str

    def publish(self, conn: Connection, batch_id: int) -> PublishResult: ...


class BuiltinLedger:
    """The default: entries already live in the built-in SQL ledger; publishing only reports them."""

    name = "builtin"

    def publish(self, conn: Connection, batch_id: int) -> PublishResult:
        q = (
            select(func.count(func.distinct(journal_entries.c.id)), func.count(journal_lines.c.id))
            .select_from(journal_entries.join(journal_lines, journal_lines.c.entry_id == journal_entries.c.id))
            .where(
                journal_entries.c.batch_id == batch_id,
                journal_entries.c.source_type == "writeoff",
                journal_entries.c.status == "posted",
            )
        )
        entries, lines = conn.execute(q).one()
        return PublishResult(self.name, batch_id, int(entries), int(lines))


def _rows(conn: Connection, where) -> list[list[str]]:
    q = (
        select(
            journal_entries.c.idempotency_key,
            journal_entries.c.entity_code,
            journal_entries.c.posting_date,
            journal_entries.c.period,
            journal_lines.c.line_no,
            journal_lines.c.account_code,
            journal_lines.c.currency,
            journal_lines.c.debit,
            journal_lines.c.credit,
            journal_lines.c.functional_currency,
            journal_lines.c.functional_debit,
            journal_lines.c.functional_credit,
            invoices.c.invoice_ref,
            journal_lines.c.memo,
        )
        .select_from(
            journal_entries.join(journal_lines, journal_lines.c.entry_id == journal_entries.c.id).outerjoin(
                invoices, invoices.c.id == journal_lines.c.invoice_id
            )
        )
        .where(journal_entries.c.status == "posted", where)
        .order_by(journal_entries.c.idempotency_key, journal_lines.c.line_no)
    )
    out = []
    for r in conn.execute(q):
        out.append(
            [
                r.idempotency_key,
                r.entity_code,
                r.posting_date.isoformat(),
                r.period,
                str(r.line_no),
                r.account_code,
                r.currency,
                format(round_money(r.debit, r.currency), "f"),
                format(round_money(r.credit, r.currency), "f"),
                r.functional_currency,
                format(round_money(r.functional_debit, r.functional_currency), "f"),
                format(round_money(r.functional_credit, r.functional_currency), "f"),
                r.invoice_ref or "",
                r.memo or "",
            ]
        )
    return out


def render_csv(rows: Sequence[Sequence[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv_writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)  # formulas neutralised (safe_text)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_with_checksum(path: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    write_atomically(path, data)
    write_atomically(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n".encode())
    return digest


def export_batch(conn: Connection, batch_id: int, out_dir: str | os.PathLike[str]) -> PublishResult:
    """Write ``<batch_key-safe>.csv`` and its ``.sha256`` for the batch's posted write-off entries. Refused (one
    line, nothing written) for a batch that does not exist or has no posted write-off entry: an importer must never
    receive an empty journal as if it were the batch."""
    batch_key = conn.execute(select(writeoff_batches.c.batch_key).where(writeoff_batches.c.id == batch_id)).scalar()
    if batch_key is None:
        raise WriteoffError(f"write-off batch {batch_id} does not exist")
    rows = _rows(conn, (journal_entries.c.batch_id == batch_id) & (journal_entries.c.source_type == "writeoff"))
    if not rows:
        raise WriteoffError(f"write-off batch {batch_id} has no posted write-off entries: nothing to export")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch_key)
    path = Path(out_dir) / f"writeoffs_batch_{batch_id}_{safe}.csv"
    digest = _write_with_checksum(path, render_csv(rows))
    return PublishResult("journal_import_file", batch_id, len({r[0] for r in rows}), len(rows), str(path), digest)


def export_entries(conn: Connection, entry_ids: Sequence[int], path: str | os.PathLike[str]) -> PublishResult:
    """Same layout for any posted entries (e.g. reversals), to an explicit file name."""
    rows = _rows(conn, journal_entries.c.id.in_(list(entry_ids)))
    digest = _write_with_checksum(Path(path), render_csv(rows))
    return PublishResult("journal_import_file", 0, len({r[0] for r in rows}), len(rows), str(path), digest)


class JournalImportFile:
    """Adapter for GLs that import journal files (one CSV per batch + checksum)."""

    name = "journal_import_file"

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)

    def publish(self, conn: Connection, batch_id: int) -> PublishResult:
        return export_batch(conn, batch_id, self.out_dir)
