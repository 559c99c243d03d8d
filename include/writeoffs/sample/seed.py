"""Load the sample straight into the ledger, then book the opening balance so GL and sub-ledger tie from day one.

One transaction: the whole sample, the opening journal entries and the audit row commit together or not at all.
Rows go in set-wise: ``COPY ... FROM STDIN`` on PostgreSQL, chunked ``executemany`` on SQLite. Ids are the
generator's own sequence numbers (customer id = customer number, invoice id = invoice number, ...), so no
round-trip is needed to resolve foreign keys; PostgreSQL sequences are moved past them afterwards.

Seeding is idempotent per spec: seeding the same ``(seed, invoices, as_of)`` again finds the audit row of the
first run and changes nothing; seeding a different spec into a ledger that already has customers or invoices is
refused with :class:`SampleAlreadySeeded` (two samples mixed would tie out but mean nothing).

Rows are generated and rendered in a worker thread one chunk ahead of the loader: the database parses and
checks chunk *k* while Python renders chunk *k + 1* (the GIL is released while psycopg waits on the socket).

PostgreSQL bulk mode (measured: per-row foreign-key triggers and incremental secondary-index maintenance were
~80 % of the load time at 300k invoices). When the role may set ``session_replication_role`` and the loaded
tables carry no triggers other than the internal FK ones, the load runs with FK triggers off and without the
non-unique secondary indexes (their exact definitions are saved first), like ``pg_restore --disable-triggers``.
Before commit, in the same transaction, the indexes are rebuilt from the saved definitions and *every* foreign key
of the loaded tables is validated set-wise (one pass per table); a single orphan raises and rolls everything
back, so the guarantee is the one the triggers give, checked once per key instead of once per row. The parents
we did not load (entities, currencies) are locked ``FOR KEY SHARE`` first, as the triggers would. Otherwise the
load simply keeps the triggers on (slower, same result). Primary keys, unique and CHECK constraints always stay on.
The mechanics live in :mod:`writeoffs.db.bulk`, shared with the ingestion's merge and aging.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import Connection, Engine, func, select, text

from writeoffs import audit, ledger
from writeoffs.accounting import entries
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.db import bulk, dialect
from writeoffs.db.locks import SAMPLE_SEED, ledger_lock
from writeoffs.db.schema import (
    audit_log,
    collection_activities,
    customers,
    holds,
    invoices,
    payment_allocations,
    payments,
)
from writeoffs.errors import LedgerError, WriteoffError
from writeoffs.journal import JournalEntry
from writeoffs.sample.generator import (
    ENTITIES,
    GENERATOR_VERSION,
    SampleSpec,
    Totals,
    Universe,
    build_universe,
    iter_chunks,
    months_before,
)
from writeoffs.sample.render import PG_COPY, SQLITE_LEDGER, Renderer, Style

SOURCE = "sample"
ACTOR = "sample-generator"
AUDIT_ACTION = "sample.seed"
_TABLES = ("customers", "invoices", "payments", "payment_allocations", "collection_activities", "holds")
_TABLE_OBJECTS = {
    "customers": customers,
    "invoices": invoices,
    "payments": payments,
    "payment_allocations": payment_allocations,
    "collection_activities": collection_activities,
    "holds": holds,
}

T = TypeVar("T")
Progress = Callable[[str], None]


class SampleAlreadySeeded(WriteoffError):
    """The ledger already holds other data (or another sample); the sample is only loaded into an empty one."""


@dataclass(frozen=True, slots=True)
class SeedResult:
    spec: SampleSpec
    already_seeded: bool
    details: dict[str, object]  # what the audit row records: spec, totals, opening entries
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        t = self.details["totals"]
        assert isinstance(t, dict)
        if self.already_seeded:
            return (
                f"sample already seeded ({t['invoices']:,} invoices, seed {self.spec.seed}, as of "
                f"{self.spec.as_of}); nothing changed"
            )
        opening = ", ".join(
            f"{k} {v['open_balance']}"
            for k, v in t["open_by_entity_currency"].items()  # type: ignore[union-attr]
        )
        return (
            f"seeded {t['customers']:,} customers, {t['invoices']:,} invoices, {t['payments']:,} payments, "
            f"{t['activities']:,} activities, {t['holds']:,} holds in {self.seconds:.1f} s; "
            f"opening AR posted: {opening}"
        )


def seed_ledger(
    engine: Engine,
    spec: SampleSpec | None = None,
    *,
    actor: str = ACTOR,
    progress: Progress | None = None,
) -> SeedResult:
    """Load the sample into a migrated ledger and post one opening-balance entry per entity and currency."""
    spec = spec or SampleSpec()
    started = time.perf_counter()
    stages: dict[str, float] = {}
    u = build_universe(spec)
    r = Renderer(u)
    pg = dialect.of(engine).bulk_copy  # COPY, and the bulk-load window
    style = PG_COPY if pg else SQLITE_LEDGER
    with engine.begin() as conn:
        ledger_lock(conn, SAMPLE_SEED)  # two concurrent seeds of one ledger serialise, the second sees the first
        prior = _prior_seed(conn, spec)
        if prior is not None:
            return SeedResult(spec, True, prior, time.perf_counter() - started)
        _bootstrap_entities(conn, spec.as_of.replace(day=1), months_before(spec.as_of, -12))
        t0 = time.perf_counter()
        bulk = _bulk_begin(conn) if pg else None
        totals = _load_rows(conn, u, r, style, pg, progress)
        stages["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if bulk is not None:
            _bulk_end(conn, bulk)
        stages["indexes_and_keys"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if pg:
            _advance_id_sequences(conn)
        first_day = date.fromordinal(totals.min_date).replace(day=1)
        _bootstrap_entities(conn, first_day, months_before(spec.as_of, -12))
        _tie_out(conn, totals)
        stages["check"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        details = _post_opening(conn, spec, totals, actor)
        stages["post"] = time.perf_counter() - t0
    return SeedResult(spec, False, details, time.perf_counter() - started, stages)


def _bootstrap_entities(conn: Connection, periods_from: date, periods_to: date) -> None:
    """The sample's legal entities, with fiscal periods from ``periods_from`` to ``periods_to``."""
    for code, name, functional, method in ENTITIES:
        ledger.bootstrap_entity(
            conn,
            code=code,
            name=name,
            functional_currency=functional,
            method=method,
            periods_from=periods_from,
            periods_to=periods_to,
        )


def _load_rows(conn: Connection, u: Universe, r: Renderer, style: Style, pg: bool, progress: Progress | None) -> Totals:
    """Load the customers, then every chunk's tables (rendered one chunk ahead); the control totals."""
    spec = u.spec
    load = _copy if pg else _executemany
    cols, values = r.ledger_customers(style, SOURCE)
    load(conn, "customers", cols, _payload(values, pg))
    totals = Totals()

    def rendered() -> Iterator[tuple[int, list[tuple[str, tuple[str, ...], object]]]]:
        for chunk in iter_chunks(u, totals):
            tables = r.ledger_tables(chunk, style, SOURCE)
            yield int(chunk.inv_id[-1]), [(t, c, _payload(v, pg)) for t, c, v in tables]

    for k, (done, tables) in enumerate(_prefetched(rendered()), start=1):
        for table, tcols, payload in tables:
            load(conn, table, tcols, payload)
        if progress:
            progress(f"  seed chunk {k}/{len(u.chunks)}: {done:,} of {spec.invoices:,} invoices loaded")
    return totals


def _advance_id_sequences(conn: Connection) -> None:
    """PostgreSQL: move each loaded table's id sequence past the explicit ids."""
    for table in _TABLES:
        # Explicit ids do not advance the id sequences; later inserts by other features must not collide.
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), m) "
                f"FROM (SELECT MAX(id) AS m FROM {table}) s WHERE m IS NOT NULL"
            )
        )


def _post_opening(conn: Connection, spec: SampleSpec, totals: Totals, actor: str) -> dict[str, object]:
    """Post the opening-balance entries and audit the seed; the audit details."""
    opening = opening_entries(conn, spec, totals)
    posted = ledger.post_entries(conn, opening, created_by=actor)
    details: dict[str, object] = {
        "spec": spec.as_dict(),
        "generator_version": GENERATOR_VERSION,
        "totals": totals.as_dict(),
        "opening_entries": dict(sorted(posted.posted.items())),
    }
    audit.append(
        conn,
        actor=actor,
        action=AUDIT_ACTION,
        object_type="ledger",
        object_id=f"sample:{spec.seed}:{spec.invoices}:{spec.as_of.isoformat()}",
        details=details,
    )
    return details


def opening_entries(conn: Connection, spec: SampleSpec, totals: Totals) -> list[JournalEntry]:
    """``Dr AR control / Cr Suspense`` per entity and currency for the open balance at as-of.

    Functional amounts are the sum of each invoice's open balance at its booked rate, rounded per invoice (each
    invoice was booked in functional currency on its own), so the GL matches a per-invoice revaluation exactly.
    """
    out: list[JournalEntry] = []
    for (entity, currency), (_n, cents, func_cents) in sorted(totals.by_currency.items()):
        if cents == 0:
            continue
        out.append(
            entries.opening_balance(
                resolve_accounts(conn, entity),
                as_of=spec.as_of,
                currency=currency,
                amount=Decimal(cents).scaleb(-2),
                functional_amount=Decimal(func_cents).scaleb(-2),
                source_id=f"sample:{spec.seed}",
                memo=f"opening AR balance, sample seed {spec.seed}",
                description=f"Opening AR balance {entity} {currency} as of {spec.as_of.isoformat()} (sample data)",
            )
        )
    return out


def _prior_seed(conn: Connection, spec: SampleSpec) -> dict[str, object] | None:
    """The audit details of an identical earlier seed, None if the ledger is empty; refuses anything else."""
    n_cust = conn.execute(select(func.count()).select_from(customers)).scalar_one()
    n_inv = conn.execute(select(func.count()).select_from(invoices)).scalar_one()
    if not n_cust and not n_inv:
        return None
    earlier = [
        json.loads(d)
        for d in conn.execute(
            select(audit_log.c.details).where(audit_log.c.action == AUDIT_ACTION).order_by(audit_log.c.id)
        ).scalars()
    ]
    for details in earlier:
        if details.get("spec") == spec.as_dict():
            return details
    if earlier:
        had = earlier[-1]["spec"]
        raise SampleAlreadySeeded(
            f"the ledger already holds a sample ({had['invoices']:,} invoices, seed {had['seed']}, as of "
            f"{had['as_of']}); refusing to add another ({spec.invoices:,} invoices, seed {spec.seed}, as of "
            f"{spec.as_of.isoformat()}) on top. Use a fresh ledger (for the demo: `make clean`)."
        )
    raise SampleAlreadySeeded(
        f"the ledger already holds {n_cust:,} customers and {n_inv:,} invoices from another source; "
        "sample data is only seeded into an empty ledger."
    )


def _tie_out(conn: Connection, totals: Totals) -> None:
    """What landed in the tables must be exactly what was generated, before the GL is told about it."""
    counts = {
        "customers": totals.customers,
        "invoices": totals.invoices,
        "payments": totals.payments,
        "payment_allocations": totals.payment_rows,
        "collection_activities": totals.activities,
        "holds": totals.holds,
    }
    for name, expected in counts.items():
        got = conn.execute(select(func.count()).select_from(_TABLE_OBJECTS[name])).scalar_one()
        if got != expected:
            raise LedgerError(f"sample seed: {name} has {got:,} rows, the generator produced {expected:,}")
    # The money columns sum exactly on both databases (writeoffs.db.money); compared in whole cents.
    rows = conn.execute(
        select(
            invoices.c.entity_code,
            invoices.c.currency,
            func.count(),
            func.coalesce(func.sum(invoices.c.open_balance), 0),
        ).group_by(invoices.c.entity_code, invoices.c.currency)
    ).all()
    loaded = {(r[0], r[1]): (int(r[2]), r[3].scaleb(2)) for r in rows}
    expected_open = {k: (v[0], v[1]) for k, v in totals.by_currency.items()}
    if loaded != expected_open:
        raise LedgerError(f"sample seed: sub-ledger {loaded} does not match the generated totals {expected_open}")


def _bulk_begin(conn: Connection) -> bulk.BulkMode | None:
    """Enter PostgreSQL bulk mode for the sample's tables if it is safe (None: not entered); see writeoffs.db.bulk."""
    return bulk.enter(conn, _TABLE_OBJECTS)


def _bulk_end(conn: Connection, mode: bulk.BulkMode) -> None:
    """Leave bulk mode: triggers back on, indexes rebuilt, every foreign key of the loaded tables validated."""
    bulk.leave(conn, mode, context="sample seed")


def _payload(values: list[list[object]], pg: bool) -> object:
    if pg:
        if not values or not values[0]:
            return ""
        return "\n".join(map("\t".join, zip(*values, strict=True))) + "\n"  # type: ignore[arg-type]
    return list(zip(*values, strict=True))


def _copy(conn: Connection, table: str, cols: tuple[str, ...], payload: object) -> None:
    if not payload:
        return
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:  # type: ignore[union-attr]
        cp.write(payload)


def _executemany(conn: Connection, table: str, cols: tuple[str, ...], payload: object) -> None:
    rows = payload
    assert isinstance(rows, list)
    if not rows:
        return
    raw = conn.connection.driver_connection
    raw.executemany(  # type: ignore[union-attr]
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
    )


_END = object()


def _prefetched(items: Iterator[T]) -> Iterator[T]:
    """Iterate ``items`` with the next item computed in a worker thread while the caller handles the current."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sample-gen") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]
