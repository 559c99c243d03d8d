"""Stage one source for one business date: read, validate, bulk-load, quarantine, in ONE transaction.

Idempotent per (source, as-of date): the batch row is reused and its previous staged and quarantined rows are
replaced, so a re-run never duplicates; a failure rolls everything back, leaving the previous good load of that
(source, as-of) exactly as it was. Good rows are COPYed on PostgreSQL (one streaming COPY per dataset, CSV
produced by pyarrow's C++ writer, never a Python loop over rows; FK triggers off for the batch and the keys checked
set-wise before commit, see :mod:`writeoffs.db.bulk`) and bulk-inserted on SQLite (the embedded demo path, up to
~50k rows).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, delete, func, insert, select, update

from writeoffs import audit
from writeoffs.db import bulk, dialect, stats
from writeoffs.db.locks import locked
from writeoffs.db.schema import legal_entities
from writeoffs.errors import InputError, WriteoffError
from writeoffs.ingest.config import SourceConfig, SourcesConfig
from writeoffs.ingest.fields import DATASETS, NATURAL_KEYS
from writeoffs.ingest.set_checks import quarantine_set_checks
from writeoffs.ingest.sources import Source
from writeoffs.ingest.tables import STAGING, ingest_batches, ingest_quarantine
from writeoffs.ingest.validate import Context, Quarantined, first_problem, validate_chunk

log = logging.getLogger(__name__)

_TOTALS = {"invoices": ("amount", "open_balance"), "payments": ("amount", "applied_amount"), "activities": ()}


class StagingInvariantBroken(WriteoffError):
    """accepted + quarantined + filtered differs from rows read: a bug, never a data problem; rolled back."""


@dataclass(slots=True)
class _Counts:
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    filtered: int = 0  # left out by the mapping's keep_if: counted, neither staged nor quarantined

    def totals_template(self, dataset: str) -> dict[str, Decimal]:
        return {t: Decimal(0) for t in _TOTALS[dataset]}


def context(conn: Connection, config: SourcesConfig, as_of: date | None = None) -> Context:
    functional = {code: e.functional_currency for code, e in config.entities.items()}
    for code, cur in conn.execute(select(legal_entities.c.code, legal_entities.c.functional_currency)):
        functional[code] = cur  # the ledger wins over the config for entities that already exist
    return Context(functional=functional, as_of=as_of)


def stage(
    engine: Engine, config: SourcesConfig, source: Source, as_of: date, *, actor: str = "ingest"
) -> dict[str, Any]:
    """Stage ``source`` for ``as_of``; returns a JSON-serialisable summary (the batch id is what merge takes)."""
    cfg = source.config
    try:
        with engine.begin() as conn:
            summary = _stage(conn, config, source, as_of, actor)
    except InputError as exc:
        # The load rolled back; the rejection itself is recorded (its own transaction) for the auditors.
        with engine.begin() as conn:
            audit.append(
                conn,
                actor=actor,
                action="ingest.rejected",
                object_type="ingest_batch",
                object_id=f"{cfg.name}:{as_of.isoformat()}",
                details={
                    "source": exc.source or cfg.name,
                    "file": exc.file,
                    "row": exc.row,
                    "field": exc.field,
                    "reason": exc.reason,
                    "files": [dataclasses.asdict(a) for a in source.artifacts()],
                },
            )
        raise
    log.info(
        "staged %s for %s: %s rows read, %s accepted, %s quarantined, %s filtered (batch %s, load %s)",
        cfg.name,
        as_of,
        summary["rows_read"],
        summary["rows_accepted"],
        summary["rows_quarantined"],
        summary["rows_filtered"],
        summary["batch_id"],
        summary["load_no"],
    )
    return summary


def _stage(conn: Connection, config: SourcesConfig, source: Source, as_of: date, actor: str) -> dict[str, Any]:
    cfg = source.config
    bulk.set_local_work_mem(conn)  # the duplicate-key check groups a million keys
    ctx = context(conn, config, as_of)
    batch_id, load_no = _open_batch(conn, cfg.name, as_of)
    control = source.control(as_of)
    counts: dict[str, _Counts] = {}
    reasons: Counter[str] = Counter()
    unique_keys = _stage_rows(conn, source, as_of, ctx, batch_id, counts, reasons)
    _quarantine_all_set_checks(conn, cfg, batch_id, unique_keys, counts, reasons)
    # Fresh statistics (where a planner uses them): without them the planner takes a million-row staging table for
    # empty and picks nested loops for the duplicate checks and the merge.
    stats.analyze(conn, [table.name for table in STAGING.values()])
    totals = _accepted_totals(conn, batch_id, {ds: c.totals_template(ds) for ds, c in counts.items()})
    _check_invariant(conn, batch_id, counts)
    files = [dataclasses.asdict(a) for a in source.artifacts()]
    details = _details(source, counts, totals)
    rows_read = sum(c.read for c in counts.values())
    rows_accepted = sum(c.accepted for c in counts.values())
    rows_quarantined = sum(c.quarantined for c in counts.values())
    rows_filtered = sum(c.filtered for c in counts.values())
    conn.execute(
        update(ingest_batches)
        .where(ingest_batches.c.id == batch_id)
        .values(
            status="staged",
            load_no=load_no,
            config_hash=config.content_hash or None,
            rows_read=rows_read,
            rows_accepted=rows_accepted,
            rows_quarantined=rows_quarantined,
            details=audit.canonical_json(details),
            files=audit.canonical_json(files),
            control=audit.canonical_json(control) if control is not None else None,
            staged_at=datetime.now(UTC),
        )
    )
    summary = {
        "source": cfg.name,
        "as_of": as_of.isoformat(),
        "batch_id": batch_id,
        "load_no": load_no,
        "on_bad_rows": cfg.on_bad_rows,
        "rows_read": rows_read,
        "rows_accepted": rows_accepted,
        "rows_quarantined": rows_quarantined,
        "rows_filtered": rows_filtered,
        "datasets": details,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "files": files,
        "has_control": control is not None,
        "config_version": config.version,
    }
    audit.append(
        conn,
        actor=actor,
        action="ingest.staged",
        object_type="ingest_batch",
        object_id=f"{cfg.name}:{as_of.isoformat()}:{load_no}",
        details=summary,
    )
    return json.loads(audit.canonical_json(summary))  # Decimals become strings: safe for XCom


def _stage_rows(
    conn: Connection,
    source: Source,
    as_of: date,
    ctx: Context,
    batch_id: int,
    counts: dict[str, _Counts],
    reasons: Counter[str],
) -> dict[str, bool]:
    """Read, validate and write every dataset of ``source`` into staging and quarantine, counting into ``counts``
    and ``reasons``; returns per dataset whether its staged keys are unique."""
    cfg = source.config
    # PostgreSQL: the staging rows go in with FK triggers off (one per row on batch_id, most of the COPY's time);
    # bulk.leave() checks the same keys set-wise for this batch before anything else happens. Nothing in this
    # window writes a journal entry or an audit row.
    staging_tables = {**{t.name: t for t in STAGING.values()}, ingest_quarantine.name: ingest_quarantine}
    mode = bulk.enter(conn, staging_tables, drop_indexes=False)
    unique_keys: dict[str, bool] = {}
    for dataset, ds_cfg in cfg.datasets.items():
        c = counts[dataset] = _Counts()
        last_file = ""
        with _GoodRows(conn, dataset, batch_id) as good_rows:
            for chunk in source.read(dataset, as_of):
                last_file = chunk.file or last_file
                v = validate_chunk(chunk, cfg, ctx)
                if v.bad and cfg.on_bad_rows == "reject":
                    raise first_problem(v.bad, cfg.name)
                good_rows.write(v.good)
                good_rows.quarantine(v.bad)
                c.read += v.read
                c.accepted += v.good.num_rows
                c.quarantined += len(v.bad)
                c.filtered += v.filtered
                reasons.update(q.reason for q in v.bad)
        unique_keys[dataset] = good_rows.keys_unique()
        if c.read == 0 and not ds_cfg.allow_empty and (last_file or not ds_cfg.optional):
            raise InputError(
                "no data rows (header only or empty result); set allow_empty if that can be right",
                source=cfg.name,
                file=last_file or ds_cfg.file or ds_cfg.endpoint or f"{dataset} query",
                row=2 if cfg.kind == "file" else None,
            )
    if mode is not None:
        # Their one key is batch_id, written by this code as the id of the batch row _open_batch wrote in this
        # transaction: a check of "this batch's rows name an existing batch" scanned a million rows to prove that
        # the batch exists (0.8 s at 1M invoices), so every table is proven and none is checked (nor needs a
        # ``where``). The parent is still locked at leave().
        bulk.leave(conn, mode, context=f"staging {cfg.name} {as_of}", proven=frozenset(staging_tables))
    return unique_keys


def _quarantine_all_set_checks(
    conn: Connection,
    cfg: SourceConfig,
    batch_id: int,
    unique_keys: dict[str, bool],
    counts: dict[str, _Counts],
    reasons: Counter[str],
) -> None:
    """The set-wise checks of every dataset, their rows moved from the accepted to the quarantined counts."""
    for dataset in cfg.datasets:
        moved = quarantine_set_checks(
            conn, cfg.name, cfg.on_bad_rows, dataset, batch_id, keys_unique=unique_keys.get(dataset, False)
        )
        for reason, n in moved.items():
            counts[dataset].accepted -= n
            counts[dataset].quarantined += n
            reasons[reason] += n


def _details(
    source: Source, counts: dict[str, _Counts], totals: dict[str, dict[str, Decimal]]
) -> dict[str, dict[str, Any]]:
    """The batch's per-dataset counts and accepted totals (``ingest_batches.details``)."""
    details = {
        ds: {
            "read": c.read,
            "accepted": c.accepted,
            "quarantined": c.quarantined,
            "filtered": c.filtered,
            "totals": totals.get(ds, {}),
        }
        for ds, c in counts.items()
    }
    # Physical records counted independently of the parser (file sources): the reader has already refused the
    # file if they differ from what was read, so accepted + quarantined + filtered = records holds here.
    for ds, n in getattr(source, "records", {}).items():
        if ds in details:
            details[ds]["records"] = n
    return details


def _open_batch(conn: Connection, source: str, as_of: date) -> tuple[int, int]:
    found = (ingest_batches.c.source == source, ingest_batches.c.as_of_date == as_of)
    columns = (ingest_batches.c.id, ingest_batches.c.load_no)
    row = conn.execute(locked(conn, ingest_batches, *found, columns=columns)).first()
    if row is None:
        batch_id = conn.execute(
            insert(ingest_batches)
            .values(
                source=source,
                as_of_date=as_of,
                status="staged",
                load_no=0,
                rows_read=0,
                rows_accepted=0,
                rows_quarantined=0,
                details="{}",
                files="[]",
            )
            .returning(ingest_batches.c.id)
        ).scalar_one()
        return batch_id, 1
    # Replace, never append: the previous load's rows go in this same transaction (and come back on rollback).
    for table in STAGING.values():
        conn.execute(delete(table).where(table.c.batch_id == row.id))
    conn.execute(delete(ingest_quarantine).where(ingest_quarantine.c.batch_id == row.id))
    return row.id, row.load_no + 1


class _GoodRows:
    """Accepted rows of one dataset into its staging table; rejected ones into the quarantine.

    PostgreSQL: ONE streaming ``COPY`` per dataset, fed chunk after chunk (CSV from pyarrow's C++ writer, never a
    Python loop over rows) through a writer thread, so the server parses chunk *k* while Python validates chunk
    *k + 1*. Quarantined rows cannot be inserted while the COPY is open on the connection: they are buffered and
    flushed between COPYs once ``QUARANTINE_BUFFER`` accumulate, which bounds memory for a mostly-bad file.
    SQLite (the embedded demo path, up to ~50k rows): plain bulk inserts.
    """

    QUARANTINE_BUFFER = 50_000

    def __init__(self, conn: Connection, dataset: str, batch_id: int) -> None:
        self.conn, self.dataset, self.batch_id = conn, dataset, batch_id
        self.pg = dialect.of(conn).bulk_copy  # COPY (PostgreSQL) or plain bulk inserts
        self._copy_cm: Any = None
        self._copy: Any = None
        self._cursor: Any = None
        self._bad: list[Quarantined] = []
        self._keys: list[Any] = []  # the natural-key columns of every accepted row (a few bytes per row)

    def __enter__(self) -> _GoodRows:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._end_copy(exc_type, exc, tb)
        if exc_type is None:
            write_bad(self.conn, self.batch_id, self._bad)
        self._bad = []

    def write(self, good: Any) -> None:
        import pyarrow as pa

        if good.num_rows == 0:
            return
        if self.dataset in NATURAL_KEYS:
            self._keys.append(good.select(list(NATURAL_KEYS[self.dataset])))
        good = good.append_column("batch_id", pa.array([self.batch_id] * good.num_rows, pa.int64()))
        if not self.pg:
            self.conn.execute(insert(STAGING[self.dataset]), good.to_pylist())
            return
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(good, buf, pcsv.WriteOptions(include_header=False))
        if self._copy is None:
            self._begin_copy(good.column_names)
        self._copy.write(buf.getbuffer())

    def keys_unique(self) -> bool:
        """True when no natural key repeats among the accepted rows (hash grouping in pyarrow's C++ engine).

        Only a fast path: when a key does repeat, the set-wise SQL check finds and quarantines every occurrence.
        """
        if self.dataset not in NATURAL_KEYS or not self._keys:
            return True
        import pyarrow as pa

        keys = pa.concat_tables(self._keys)
        return keys.group_by(list(NATURAL_KEYS[self.dataset])).aggregate([]).num_rows == keys.num_rows

    def quarantine(self, bad: list[Quarantined]) -> None:
        if not self.pg:
            write_bad(self.conn, self.batch_id, bad)
            return
        self._bad.extend(bad)
        if len(self._bad) >= self.QUARANTINE_BUFFER:
            self._end_copy(None, None, None)
            write_bad(self.conn, self.batch_id, self._bad)
            self._bad = []

    def _begin_copy(self, columns: list[str]) -> None:
        from psycopg import sql
        from psycopg.copy import QueuedLibpqWriter

        stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(STAGING[self.dataset].name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        self._cursor = self.conn.connection.driver_connection.cursor()
        self._copy_cm = self._cursor.copy(stmt, writer=QueuedLibpqWriter(self._cursor))
        self._copy = self._copy_cm.__enter__()

    def _end_copy(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._copy_cm is None:
            return
        cm, cursor = self._copy_cm, self._cursor
        self._copy_cm = self._copy = self._cursor = None
        try:
            cm.__exit__(exc_type, exc, tb)
        finally:
            cursor.close()


def write_bad(conn: Connection, batch_id: int, bad: list[Quarantined]) -> None:
    if not bad:
        return
    conn.execute(
        insert(ingest_quarantine),
        [
            {
                "batch_id": batch_id,
                "dataset": q.dataset,
                "source_file": q.file[:300],
                "source_row": q.row,
                "field": q.field,
                "reason": q.reason,
                "message": q.message[:2000],
                "raw": q.raw if q.raw is None or len(q.raw) <= 10_000 else json.dumps({"_cut": True}),
            }
            for q in bad
        ],
    )


def _accepted_totals(
    conn: Connection, batch_id: int, totals: dict[str, dict[str, Decimal]]
) -> dict[str, dict[str, Decimal]]:
    """Totals of what finally stayed staged (after the set-wise checks), by dataset."""
    out: dict[str, dict[str, Decimal]] = {}
    for dataset, cols in totals.items():
        if not cols:
            out[dataset] = {}
            continue
        t = STAGING[dataset]
        row = conn.execute(
            select(*(func.coalesce(func.sum(t.c[c]), 0).label(c) for c in cols)).where(t.c.batch_id == batch_id)
        ).one()
        out[dataset] = {c: Decimal(str(row._mapping[c])).quantize(Decimal("0.0001")) for c in cols}
    return out


def _check_invariant(conn: Connection, batch_id: int, counts: dict[str, _Counts]) -> None:
    quarantined = dict(
        conn.execute(
            select(ingest_quarantine.c.dataset, func.count())
            .where(ingest_quarantine.c.batch_id == batch_id)
            .group_by(ingest_quarantine.c.dataset)
        ).all()
    )
    for dataset, c in counts.items():
        t = STAGING[dataset]
        staged = conn.execute(select(func.count()).select_from(t).where(t.c.batch_id == batch_id)).scalar_one()
        q = quarantined.get(dataset, 0)
        if staged != c.accepted or q != c.quarantined or staged + q + c.filtered != c.read:
            raise StagingInvariantBroken(
                f"{dataset}: read {c.read}, staged {staged} (counted {c.accepted}), quarantined {q} "
                f"(counted {c.quarantined}), filtered {c.filtered}; the batch was rolled back"
            )


def latest_batches(conn: Connection, as_of: date, sources: list[str] | None = None) -> list[int]:
    q = select(ingest_batches.c.id).where(ingest_batches.c.as_of_date == bindparam("d", as_of, type_=Date))
    if sources:
        q = q.where(ingest_batches.c.source.in_(sources))
    return list(conn.execute(q.order_by(ingest_batches.c.id)).scalars())


__all__ = ["DATASETS", "StagingInvariantBroken", "context", "latest_batches", "stage"]
