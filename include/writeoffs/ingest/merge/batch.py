"""The run and one batch: :func:`merge` (one transaction, the invoices lock) and :func:`_merge_batch` (staged row
check, entities, bulk mode or not, the per-table merges in order, statistics, the AR sync entry, the audit row),
with the bulk-mode decision (:func:`_bulk_worthy`, :data:`BULK_MIN_ROWS`) and unknown entities
(:func:`_ensure_entities`).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update

from writeoffs import audit, ledger, subledger
from writeoffs.db import bulk, dialect, stats
from writeoffs.db.locks import locked
from writeoffs.db.schema import (
    collection_activities,
    customers,
    holds,
    invoice_movements,
    invoices,
    legal_entities,
    payment_allocations,
    payments,
)
from writeoffs.errors import ConfigError, WriteoffError
from writeoffs.ingest.config import SourcesConfig
from writeoffs.ingest.merge.activities import _merge_activities
from writeoffs.ingest.merge.ar_sync import _open_ar, _post_ar_sync
from writeoffs.ingest.merge.common import log
from writeoffs.ingest.merge.customers import _merge_customers
from writeoffs.ingest.merge.holds import _merge_holds
from writeoffs.ingest.merge.invoices import _merge_invoices
from writeoffs.ingest.merge.payments import _merge_payments
from writeoffs.ingest.tables import STAGING, ingest_batches

#: Smallest load (staged invoices) for which the PostgreSQL bulk path is considered.
BULK_MIN_ROWS = 100_000
#: Rows written to a table by one merge above which it is analyzed in the merge's transaction (writeoffs.db.stats).
ANALYZE_AFTER_ROWS = 10_000
#: What the bulk path loads (writeoffs.db.bulk): every table the merge writes before the AR sync entry.
_BULK_TABLES = {
    "customers": customers,
    "invoices": invoices,
    "holds": holds,
    "invoice_movements": invoice_movements,
    "payments": payments,
    "payment_allocations": payment_allocations,
    "collection_activities": collection_activities,
}


class StagingLost(WriteoffError):
    """Staged rows of a batch are missing (e.g. UNLOGGED tables emptied by a crash): re-run the staging."""


def merge(
    engine: Engine, config: SourcesConfig, batch_ids: list[int], as_of: date, *, actor: str = "ingest"
) -> dict[str, Any]:
    """Merge the given staged batches (ids from the staging step); idempotent per batch load."""
    results = []
    with engine.begin() as conn:
        if dialect.of(conn).row_locks:
            # Writers of invoices (write-off posting, recoveries) wait for the merge: the before/after totals that
            # drive the AR sync entry must measure this merge only.
            conn.execute(text("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE"))
            # The customer aggregation and the invoice joins hash a million rows: in memory, not in temp files.
            bulk.set_local_work_mem(conn)
        for batch_id in sorted(set(batch_ids)):
            results.append(_merge_batch(conn, config, batch_id, as_of, actor))
    return {"as_of": as_of.isoformat(), "batches": results}


def _merge_batch(conn: Connection, config: SourcesConfig, batch_id: int, as_of: date, actor: str) -> dict[str, Any]:
    b = conn.execute(locked(conn, ingest_batches, ingest_batches.c.id == batch_id)).first()
    if b is None:
        raise WriteoffError(f"ingest batch {batch_id} does not exist")
    if b.merged_load_no == b.load_no:
        # This load was merged already (a retried task): the ledger has it, nothing is applied twice.
        prev = json.loads(b.merge_summary or "{}")
        return {**prev, "already_merged": True}
    details = json.loads(b.details)
    _check_staged(conn, b, details)
    src = b.source
    p = {"b": batch_id, "src": src, "d": as_of}
    entities = _ensure_entities(conn, config, batch_id, as_of)
    before = _open_ar(conn, entities)
    mode = None
    if _bulk_worthy(conn, details.get("invoices", {}).get("accepted", 0)):
        # A first load (or one at least twice the table): every table the merge writes goes in with FK triggers
        # off, without its non-unique indexes (rebuilt after; holds keeps them: few rows, the close-holds update
        # uses them), and every key is validated set-wise at bulk.leave() (writeoffs.db.bulk); an orphan rolls the
        # whole merge back. The per-row FK checks were most of a first load's time (measured at 1M invoices with
        # 300k payments and 1.85M activities: see BENCHMARKS.md) and every one of them is redundant: each child row
        # comes out of a join with its parent in this transaction. What the FK triggers' KEY SHARE locks would
        # have ensured until commit, the locks ensure: invoices is locked for the merge (above), customers and
        # payments are locked SHARE (no writer) at bulk.leave(), before the keys are validated. No journal entry
        # is written inside this window: _post_ar_sync runs after bulk.leave() and checks it.
        # The invoices' movements (one per new invoice, written by the ENABLE ALWAYS trigger of migration 0013) go in
        # with their two indexes rebuilt after, like the invoices'.
        mode = bulk.enter(conn, _BULK_TABLES, keep_indexes=frozenset({"holds"}))
    counts = _merge_tables(conn, p, b.load_no, bulk_mode=mode is not None)
    if mode is not None:
        bulk.leave(
            conn,
            mode,
            context=f"merge of batch {batch_id} ({src} {as_of})",
            table_locks=frozenset({"customers", "payments"}),
        )
    _analyze_loaded(conn, counts)
    after = _open_ar(conn, entities)
    posted, notes = _post_ar_sync(conn, src, as_of, b.load_no, before, after, actor)
    summary = {
        "batch_id": batch_id,
        "source": src,
        "as_of": b.as_of_date.isoformat() if isinstance(b.as_of_date, date) else str(b.as_of_date),
        "load_no": b.load_no,
        "counts": counts,
        "bulk_mode": mode is not None,
        "ar_sync": posted,
        "notes": notes,
    }
    _record_merged(conn, b, summary, actor)
    return json.loads(audit.canonical_json(summary))


def _check_staged(conn: Connection, b: Any, details: dict[str, Any]) -> None:
    """Every dataset of batch ``b`` still has the rows staging accepted, or :class:`StagingLost`."""
    batch_id = b.id
    for dataset, t in STAGING.items():
        expected = details.get(dataset, {}).get("accepted", 0)
        have = conn.execute(select(func.count()).select_from(t).where(t.c.batch_id == batch_id)).scalar_one()
        if have != expected:
            raise StagingLost(
                f"batch {batch_id} ({b.source} {b.as_of_date}): {dataset} has {have} staged rows, {expected} expected;"
                " re-run the staging task"
            )


def _merge_tables(conn: Connection, p: dict[str, Any], load_no: int, *, bulk_mode: bool) -> dict[str, int]:
    """The per-table merges in order (customers, invoices, holds, payments, activities); returns their counts."""
    src, as_of = p["src"], p["d"]
    counts: dict[str, int] = {}
    counts.update(_merge_customers(conn, p))
    # The balance and status changes of the load are movements of its as-of date (writeoffs.subledger).
    with subledger.movement(conn, "ingest", as_of, f"ingest:{src}:{as_of.isoformat()}:{load_no}"):
        counts.update(_merge_invoices(conn, p, bulk_mode=bulk_mode))
    if counts["invoices_inserted_or_changed"] > ANALYZE_AFTER_ROWS:
        # The statements below (and the aging) join the invoices just written; stale statistics would plan them
        # as if the table were still small.
        stats.analyze(conn, ("invoices", "customers"))
    counts.update(_merge_holds(conn, p))
    counts.update(_merge_payments(conn, p))
    counts.update(_merge_activities(conn, p))
    return counts


def _analyze_loaded(conn: Connection, counts: dict[str, int]) -> None:
    # What the next tasks (aging, selection, reconciliation) plan over: analyzed with this transaction's rows, not
    # left to autovacuum, which sees them only after the commit and its naptime.
    loaded = {
        "invoice_movements": counts["invoices_inserted_or_changed"],
        "payments": counts["payments_inserted"],
        "payment_allocations": counts["allocations_inserted"],
        "collection_activities": counts["activities_inserted"] + counts["activities_updated"],
    }
    stats.analyze(conn, [t for t, n in loaded.items() if n > ANALYZE_AFTER_ROWS])


def _record_merged(conn: Connection, b: Any, summary: dict[str, Any], actor: str) -> None:
    """Batch ``b`` marked merged (with its summary, so a retry returns it) and the ``ingest.merged`` audit row."""
    conn.execute(
        update(ingest_batches)
        .where(ingest_batches.c.id == b.id)
        .values(
            status="merged",
            merged_load_no=b.load_no,
            merged_at=datetime.now(UTC),
            merge_summary=audit.canonical_json(summary),
        )
    )
    audit.append(
        conn,
        actor=actor,
        action="ingest.merged",
        object_type="ingest_batch",
        object_id=f"{summary['source']}:{summary['as_of']}:{b.load_no}",
        details=summary,
    )


def _bulk_worthy(conn: Connection, staged_invoices: int) -> bool:
    """Bulk mode pays off when the load is big and at least twice the size of the table, i.e. at least half of it
    can be new (index rebuilds and the FK validation then cost less than the load itself). A daily load over a
    full table (most rows unchanged) takes the normal path: only changed rows are updated, new ones inserted."""
    if not dialect.of(conn).bulk_copy or staged_invoices < BULK_MIN_ROWS:
        return False
    half = staged_invoices // 2
    existing = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM invoices LIMIT :cap) AS i"), {"cap": half + 1}
    ).scalar_one()
    return existing <= half


def _ensure_entities(conn: Connection, config: SourcesConfig, batch_id: int, as_of: date) -> list[str]:
    wanted = set()
    for t in STAGING.values():
        wanted |= set(conn.execute(select(t.c.entity).distinct().where(t.c.batch_id == batch_id)).scalars())
    known = set(conn.execute(select(legal_entities.c.code)).scalars())
    for code in sorted(wanted - known):
        ent = config.entities.get(code)
        if ent is None or config.unknown_entities == "refuse":
            raise ConfigError(
                f"entity {code} is not in the ledger"
                + (
                    " and unknown_entities is 'refuse'"
                    if ent
                    else " and not configured under entities: in sources.yaml"
                )
            )
        # Periods two years back and one forward: enough for the AR sync entries and for write-offs of old debt.
        ledger.bootstrap_entity(
            conn,
            code=code,
            name=ent.name,
            functional_currency=ent.functional_currency,
            method=ent.method,
            periods_from=date(as_of.year - 2, 1, 1),
            periods_to=as_of + timedelta(days=366),
        )
        log.info("bootstrapped entity %s (%s, %s method)", code, ent.functional_currency, ent.method)
    return sorted(wanted)
