"""Merge staged batches into the sub-ledger, set-wise, and keep the GL AR control account tied to it.

One transaction for all batches of the run: customers (with parent links and bankruptcy flags), invoices, holds
derived from the dispute / payment-plan flags, payments with their allocations, and collection activities are
upserted on their natural keys with INSERT ... SELECT / UPDATE ... FROM statements (no Python loop over rows).

Rules that protect the ledger's own state:
- the ledger is authoritative for write-off state: an invoice that is written_off, partially_recovered or recovered
  (:data:`writeoffs.accounting.status.LEDGER_OWNED_STATUSES`) is never updated from a source. Its payments are
  still recorded; cash on what was written off becomes a 'recovery' allocation (booked as recovery income by
  :func:`writeoffs.recoveries_pending.book_pending_recoveries`, never applied to the open balance), see
  :func:`_merge_allocations` for the split on partly written-off invoices;
- the source's open balance is authoritative for every other invoice (payments are history, not re-applied);
  an open balance of zero makes the invoice ``paid``. That includes a *charged-off* invoice: charge-off is a
  declaration, the receivable is still on the books, so its payments are 'regular' allocations and reduce its
  balance (it stays charged_off until paid). A *reversed* invoice keeps its status too (it is not re-proposed
  until a person clears it or the policy's cooling period ends) unless it is paid;
- GL tie-out: the net change of sub-ledger open AR per entity and currency is posted as one "AR sync" entry
  (Dr/Cr AR control against suspense) through :func:`writeoffs.ledger.post_entries`, keyed per
  (source, as-of, entity, currency, load). PostgreSQL takes a table lock on ``invoices`` for the merge so that
  the before/after totals measure only this merge.
- a first load (or one that is mostly new) on PostgreSQL takes the bulk path of :mod:`writeoffs.db.bulk` for
  every table it writes - customers, invoices (and their movements), holds, payments, allocations, activities - (FK
  triggers off, non-unique indexes rebuilt, every key checked set-wise before the AR sync entry is posted); a daily
  load updates only the rows that changed and inserts the new ones.
- unknown entities: created with :func:`writeoffs.ledger.bootstrap_entity` from ``entities:`` in sources.yaml
  (``unknown_entities: bootstrap``), otherwise the merge is refused with the entity named.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, select, text, update

from writeoffs import audit, ledger, subledger
from writeoffs.accounting import entries as entry_rules
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.accounting.status import LEDGER_OWNED_STATUSES, RECOVERY_STATUSES, InvoiceStatus, sql_list
from writeoffs.db import bulk, stats
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
from writeoffs.ingest.tables import STAGING, ingest_batches
from writeoffs.journal import JournalEntry
from writeoffs.money import MINOR_UNITS, money_str, round_money, to_decimal

log = logging.getLogger(__name__)

#: Statuses the ledger owns: a source never overwrites them (one home: writeoffs.accounting.status).
PROTECTED = LEDGER_OWNED_STATUSES
_PROTECTED_SQL = sql_list(PROTECTED)
#: Statuses a source update keeps while the invoice still has an open balance (the ledger declared them).
_KEPT_WHILE_OPEN_SQL = sql_list((InvoiceStatus.CHARGED_OFF, InvoiceStatus.REVERSED))


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


def _sql(conn: Connection, statement: str, params: dict[str, Any]) -> int:
    stmt = text(statement)
    if ":d" in statement:
        stmt = stmt.bindparams(bindparam("d", type_=Date))
    t0 = time.perf_counter()
    n = conn.execute(stmt, params).rowcount or 0
    log.debug("%.2fs %d rows: %s", time.perf_counter() - t0, n, " ".join(statement.split())[:90])
    return n


def merge(
    engine: Engine, config: SourcesConfig, batch_ids: list[int], as_of: date, *, actor: str = "ingest"
) -> dict[str, Any]:
    """Merge the given staged batches (ids from the staging step); idempotent per batch load."""
    results = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Writers of invoices (write-off posting, recoveries) wait for the merge: the before/after totals that
            # drive the AR sync entry must measure this merge only.
            conn.execute(text("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE"))
            # The customer aggregation and the invoice joins hash a million rows: in memory, not in temp files.
            bulk.set_local_work_mem(conn)
        for batch_id in sorted(set(batch_ids)):
            results.append(_merge_batch(conn, config, batch_id, as_of, actor))
    return {"as_of": as_of.isoformat(), "batches": results}


def _merge_batch(conn: Connection, config: SourcesConfig, batch_id: int, as_of: date, actor: str) -> dict[str, Any]:
    b = conn.execute(select(ingest_batches).where(ingest_batches.c.id == batch_id).with_for_update()).first()
    if b is None:
        raise WriteoffError(f"ingest batch {batch_id} does not exist")
    if b.merged_load_no == b.load_no:
        # This load was merged already (a retried task): the ledger has it, nothing is applied twice.
        prev = json.loads(b.merge_summary or "{}")
        return {**prev, "already_merged": True}
    details = json.loads(b.details)
    for dataset, t in STAGING.items():
        expected = details.get(dataset, {}).get("accepted", 0)
        have = conn.execute(text(f"SELECT COUNT(*) FROM {t.name} WHERE batch_id = :b"), {"b": batch_id}).scalar_one()
        if have != expected:
            raise StagingLost(
                f"batch {batch_id} ({b.source} {b.as_of_date}): {dataset} has {have} staged rows, {expected} expected;"
                " re-run the staging task"
            )
    src = b.source
    p = {"b": batch_id, "src": src, "d": as_of}
    entities = _ensure_entities(conn, config, batch_id, as_of)
    before = _open_ar(conn, entities)
    counts: dict[str, int] = {}
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
    counts.update(_merge_customers(conn, p))
    # The balance and status changes of the load are movements of its as-of date (writeoffs.subledger).
    with subledger.movement(conn, "ingest", as_of, f"ingest:{src}:{as_of.isoformat()}:{b.load_no}"):
        counts.update(_merge_invoices(conn, p, bulk_mode=mode is not None))
    if counts["invoices_inserted_or_changed"] > ANALYZE_AFTER_ROWS:
        # The statements below (and the aging) join the invoices just written; stale statistics would plan them
        # as if the table were still small.
        stats.analyze(conn, ("invoices", "customers"))
    counts.update(_merge_holds(conn, p))
    counts.update(_merge_payments(conn, p))
    counts.update(_merge_activities(conn, p))
    if mode is not None:
        bulk.leave(
            conn,
            mode,
            context=f"merge of batch {batch_id} ({src} {as_of})",
            table_locks=frozenset({"customers", "payments"}),
        )
    # What the next tasks (aging, selection, reconciliation) plan over: analyzed with this transaction's rows, not
    # left to autovacuum, which sees them only after the commit and its naptime.
    loaded = {
        "invoice_movements": counts["invoices_inserted_or_changed"],
        "payments": counts["payments_inserted"],
        "payment_allocations": counts["allocations_inserted"],
        "collection_activities": counts["activities_inserted"] + counts["activities_updated"],
    }
    stats.analyze(conn, [t for t, n in loaded.items() if n > ANALYZE_AFTER_ROWS])
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
    conn.execute(
        update(ingest_batches)
        .where(ingest_batches.c.id == batch_id)
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
        object_id=f"{src}:{summary['as_of']}:{b.load_no}",
        details=summary,
    )
    return json.loads(audit.canonical_json(summary))


def _bulk_worthy(conn: Connection, staged_invoices: int) -> bool:
    """Bulk mode pays off when the load is big and at least twice the size of the table, i.e. at least half of it
    can be new (index rebuilds and the FK validation then cost less than the load itself). A daily load over a
    full table (most rows unchanged) takes the normal path: only changed rows are updated, new ones inserted."""
    if conn.dialect.name != "postgresql" or staged_invoices < BULK_MIN_ROWS:
        return False
    half = staged_invoices // 2
    existing = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM invoices LIMIT :cap) AS i"), {"cap": half + 1}
    ).scalar_one()
    return existing <= half


def _ensure_entities(conn: Connection, config: SourcesConfig, batch_id: int, as_of: date) -> list[str]:
    wanted = set()
    for t in STAGING.values():
        wanted |= set(
            conn.execute(text(f"SELECT DISTINCT entity FROM {t.name} WHERE batch_id = :b"), {"b": batch_id}).scalars()
        )
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


def _open_ar(conn: Connection, entities: list[str]) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Open AR per (entity, currency): the document total and the functional total.

    The functional total is the sum of each invoice's open balance at its booked rate *rounded per invoice*
    (:func:`writeoffs.accounting.entries.functional`, half-up), because that is how every entry that moves one
    invoice books it: the AR sync delta is then exactly what the write-offs, recoveries and reversals of the same
    invoices move, and a fully written-off currency leaves no functional residue on AR control.
    """
    if not entities:
        return {}
    functional = dict(
        conn.execute(
            select(legal_entities.c.code, legal_entities.c.functional_currency).where(
                legal_entities.c.code.in_(entities)
            )
        ).all()
    )
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    if conn.dialect.name == "postgresql":
        # Exact NUMERIC arithmetic; ROUND(numeric, n) rounds half away from zero = ROUND_HALF_UP (tested against
        # entries.functional in tests/unit/test_posting_entries.py-style checks of the merge).
        minor = (
            "CASE "
            + " ".join(
                f"WHEN entity_code = '{code}' THEN {MINOR_UNITS.get(cur, 2)}"
                for code, cur in sorted(functional.items())
            )
            + " ELSE 2 END"
        )
        rows = conn.execute(
            text(
                "SELECT entity_code, currency, COALESCE(SUM(open_balance), 0), "
                f"COALESCE(SUM(ROUND(open_balance * fx_rate, {minor})), 0) "
                "FROM invoices WHERE entity_code IN :ents AND open_balance <> 0 GROUP BY entity_code, currency"
            ).bindparams(bindparam("ents", expanding=True)),
            {"ents": entities},
        ).all()
        for r in rows:
            out[(r[0], r[1])] = (to_decimal(r[2]), to_decimal(r[3]))
        return out
    # SQLite has no exact decimal arithmetic: the typed columns come back as Decimal and are summed here.
    totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    q = select(invoices.c.entity_code, invoices.c.currency, invoices.c.open_balance, invoices.c.fx_rate).where(
        invoices.c.entity_code.in_(entities), invoices.c.open_balance != 0
    )
    for ent, cur, bal, rate in conn.execute(q):
        t = totals[(ent, cur)]
        bal = to_decimal(bal)
        t[0] += bal
        t[1] += entry_rules.functional(bal, rate, functional[ent])
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _merge_customers(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    bankruptcy_date = (
        "CASE WHEN excluded.bankruptcy_flag THEN COALESCE(customers.bankruptcy_date, excluded.bankruptcy_date) END"
    )
    changes = {
        "name": "excluded.name",
        "segment": "excluded.segment",
        "bankruptcy_flag": "excluded.bankruptcy_flag",
        "bankruptcy_date": bankruptcy_date,
        "source": "excluded.source",
    }
    # Unchanged customers are not rewritten (a daily load repeats nearly all of them). PostgreSQL still row-locks
    # every conflicting customer, changed or not, which the bulk path relies on (see _merge_batch).
    upserted = _sql(
        conn,
        f"""
        INSERT INTO customers (entity_code, customer_ref, name, segment, bankruptcy_flag, bankruptcy_date, source)
        SELECT entity, customer_ref, MAX(COALESCE(customer_name, customer_ref)), COALESCE(MAX(segment), 'default'),
               MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1,
               CASE WHEN MAX(CASE WHEN bankrupt THEN 1 ELSE 0 END) = 1 THEN :d END, :src
        FROM stg_invoices WHERE batch_id = :b
        GROUP BY entity, customer_ref
        ON CONFLICT (entity_code, customer_ref) DO UPDATE SET
            {", ".join(f"{col} = {expr}" for col, expr in changes.items())}
        WHERE {" OR ".join(f"customers.{col} {distinct} {expr}" for col, expr in changes.items())}
        """,
        p,
    )
    # Customers only seen as payers, in activities or as parents: created with their reference as name.
    others = 0
    for select_refs in (
        "SELECT DISTINCT entity AS e, parent_customer_ref AS ref FROM stg_invoices"
        " WHERE batch_id = :b AND parent_customer_ref IS NOT NULL",
        "SELECT DISTINCT entity AS e, customer_ref AS ref FROM stg_payments WHERE batch_id = :b",
        "SELECT DISTINCT entity AS e, customer_ref AS ref FROM stg_activities WHERE batch_id = :b",
    ):
        # "WHERE true": SQLite needs it to parse INSERT ... SELECT ... ON CONFLICT unambiguously.
        others += _sql(
            conn,
            f"""
            INSERT INTO customers (entity_code, customer_ref, name, source)
            SELECT r.e, r.ref, r.ref, :src FROM ({select_refs}) AS r WHERE true
            ON CONFLICT (entity_code, customer_ref) DO NOTHING
            """,
            p,
        )
    parents = _sql(
        conn,
        """
        UPDATE customers SET parent_id = m.parent_id
        FROM (SELECT DISTINCT s.entity, s.customer_ref, par.id AS parent_id
              FROM stg_invoices s
              JOIN customers par ON par.entity_code = s.entity AND par.customer_ref = s.parent_customer_ref
              WHERE s.batch_id = :b AND s.parent_customer_ref IS NOT NULL AND s.parent_customer_ref <> s.customer_ref
             ) AS m
        WHERE customers.entity_code = m.entity AND customers.customer_ref = m.customer_ref
          AND (customers.parent_id IS NULL OR customers.parent_id <> m.parent_id)
        """,
        p,
    )
    return {"customers_upserted": upserted, "customers_created_from_refs": others, "parent_links_set": parents}


def _merge_invoices(conn: Connection, p: dict[str, Any], *, bulk_mode: bool = False) -> dict[str, int]:
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    values = {
        "customer_id": "c.id",
        "invoice_date": "s.invoice_date",
        "due_date": "s.due_date",
        "currency": "s.currency",
        "amount": "s.amount",
        "open_balance": "s.open_balance",
        "fx_rate": "s.fx_rate",
        "status": "CASE WHEN s.open_balance = 0 THEN 'paid' ELSE 'open' END",
        "balance_transferred_to_parent": "s.transferred_to_parent",
        "description": "s.description",
    }
    # Update first, then insert what is new: a plain INSERT with an anti-join is markedly cheaper than
    # INSERT ... ON CONFLICT for a million new rows, and the table lock (PostgreSQL) / single writer (SQLite)
    # means no other transaction can insert the same key in between. Unchanged rows are not rewritten.
    # A partly written-off invoice is still open here, but the source does not know our write-off (this ledger is
    # the book of record for write-offs): its open balance is the source's minus what we wrote off, or the
    # write-off's reduction would be undone and the sub-ledger would no longer tie to the GL.
    net_open = (
        "CASE WHEN s.open_balance > invoices.written_off_amount"
        " THEN s.open_balance - invoices.written_off_amount ELSE 0 END"
    )
    updates = {
        **values,
        "open_balance": net_open,
        "status": (
            f"CASE WHEN ({net_open}) = 0 THEN 'paid' "
            f"WHEN invoices.status IN {_KEPT_WHILE_OPEN_SQL} THEN invoices.status ELSE 'open' END"
        ),
    }
    updated = _sql(
        conn,
        f"""
        UPDATE invoices SET {", ".join(f"{col} = {expr}" for col, expr in updates.items())}, source = :src
        FROM stg_invoices s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b AND invoices.entity_code = s.entity AND invoices.invoice_ref = s.invoice_ref
          AND invoices.status NOT IN {_PROTECTED_SQL}
          AND ({" OR ".join(f"invoices.{col} {distinct} {expr}" for col, expr in updates.items())})
        """,
        p,
    )
    is_new = "NOT EXISTS (SELECT 1 FROM invoices i WHERE i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref)"
    if conn.dialect.name == "postgresql" and not conn.execute(text("SELECT EXISTS (SELECT 1 FROM invoices)")).scalar():
        # An empty table (the ledger's first load; merge() holds invoices SHARE ROW EXCLUSIVE, so no other writer
        # can add a row until the commit): every staged key is new, and probing the unique index for each row of a
        # million - an index this statement fills as it goes - was 5.3 s of the 17 s insert (EXPLAIN ANALYZE at
        # 1,000,000 invoices, BENCHMARKS.md). A key staged twice still fails on the unique constraint, as before.
        is_new = "TRUE"
    elif conn.dialect.name == "postgresql" and not bulk_mode:
        # Which staged rows are new is decided before the first one is inserted. Probed inside the INSERT, the
        # anti-join also visits the index entries of the rows this very statement has inserted so far (invisible
        # to it, but still in the index): on a small or empty table the planner may take the (entity_code, status)
        # index for the probe, and each probe then walks every row inserted before it -- quadratic. Measured at a
        # first load of 40,000 invoices: 22.7 s for the INSERT, 24.5 s the merge (20,000: 6.3 s). The bulk path
        # has no such index during the load (dropped, rebuilt after).
        conn.execute(text("DROP TABLE IF EXISTS pg_temp.merge_new_invoices"))
        conn.execute(
            text(
                "CREATE TEMPORARY TABLE merge_new_invoices ON COMMIT DROP AS "
                f"SELECT s.entity, s.invoice_ref FROM stg_invoices s WHERE s.batch_id = :b AND {is_new}"
            ),
            p,
        )
        conn.execute(text("ANALYZE pg_temp.merge_new_invoices"))
        is_new = "(s.entity, s.invoice_ref) IN (SELECT entity, invoice_ref FROM pg_temp.merge_new_invoices)"
    inserted = _sql(
        conn,
        f"""
        INSERT INTO invoices (entity_code, invoice_ref, source, {", ".join(values)})
        SELECT s.entity, s.invoice_ref, :src, {", ".join(values.values())}
        FROM stg_invoices s
        JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b AND {is_new}
        """,
        p,
    )
    n = updated + inserted
    protected = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_invoices s"
            " JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref "
            f"WHERE s.batch_id = :b AND i.status IN {_PROTECTED_SQL}"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {
        "invoices_inserted": inserted,
        "invoices_updated": updated,
        "invoices_inserted_or_changed": n,
        "invoices_protected_by_ledger_state": protected,
    }


#: Holds derived from invoice flags: (hold type, flag column, start date expression).
_HOLD_FLAGS = (("dispute", "disputed", "s.dispute_since"), ("payment_plan", "payment_plan", ":d"))


def _merge_holds(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    note = f"ingest:{p['src']}"
    # Without fresh statistics the planner takes holds for empty and anti-joins thousands of new holds against it
    # in a nested loop (measured: 12 s on a re-run of a million invoices instead of 0.3 s).
    stats.analyze(conn, ("holds",))

    def open_ingest_holds() -> dict[str, int]:
        # Only holds this ingestion opened are closed by it; holds set by people stay until people end them.
        return dict(
            conn.execute(
                text(
                    "SELECT hold_type, COUNT(*) FROM holds WHERE end_date IS NULL AND note = :note GROUP BY hold_type"
                ),
                {"note": note},
            ).all()
        )

    before = open_ingest_holds()
    flagged = " UNION ALL ".join(
        f"SELECT s.entity, s.invoice_ref, '{ht}' AS hold_type, COALESCE({since}, :d) AS start_date"
        f" FROM stg_invoices s WHERE s.batch_id = :b AND s.{flag}"
        for ht, flag, since in _HOLD_FLAGS
    )
    # Both hold types in one statement: the invoices (a million fresh rows on a first load) are joined once.
    # The open holds are read once, before the first insert (MATERIALIZED): a NOT EXISTS probing holds directly
    # would re-read the pages this very statement is filling, once per new hold (quadratic: 3.7 s for 30k holds).
    # Hold types and flag columns are constants of this module, never data.
    _sql(
        conn,
        f"""
        WITH open_holds AS MATERIALIZED (
            SELECT invoice_id, hold_type FROM holds WHERE end_date IS NULL AND invoice_id IS NOT NULL
        )
        INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, note)
        SELECT i.customer_id, i.id, f.hold_type, f.start_date, :note
        FROM ({flagged}) AS f
        JOIN invoices i ON i.entity_code = f.entity AND i.invoice_ref = f.invoice_ref
        WHERE NOT EXISTS (SELECT 1 FROM open_holds h WHERE h.invoice_id = i.id AND h.hold_type = f.hold_type)
          AND (f.hold_type <> 'dispute' OR i.status <> 'paid')
        """,
        {**p, "note": note},
    )
    # The insert only adds open ingestion holds, and the invoices lock keeps other merges out: the difference is
    # exactly what it opened.
    after = open_ingest_holds()
    for hold_type, flag, _since in _HOLD_FLAGS:
        out[f"{hold_type}_holds_opened"] = after.get(hold_type, 0) - before.get(hold_type, 0)
        # Counted before the insert: the holds it opened are on flagged invoices, never the ones to close.
        if not before.get(hold_type):
            out[f"{hold_type}_holds_closed"] = 0
            continue
        stats.analyze(conn, ("holds",))  # a few rows against a million: the planner must know it
        out[f"{hold_type}_holds_closed"] = _sql(
            conn,
            f"""
            UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
            FROM invoices i, stg_invoices s
            WHERE holds.invoice_id = i.id AND s.entity = i.entity_code AND s.invoice_ref = i.invoice_ref
              AND s.batch_id = :b AND NOT s.{flag}
              AND holds.hold_type = :ht AND holds.end_date IS NULL AND holds.note = :note
            """,
            {**p, "ht": hold_type, "note": note},
        )
    # A dispute on an invoice that is paid in full is over, whoever opened the hold: it is closed here (set-wise,
    # counted in the merge summary that the ingest.merged audit row records) and none is opened above, so an
    # export that keeps flagging a paid invoice disputed does not open and close a hold every day. Payment-plan
    # holds and holds on written-off invoices are left to people (their end is a resolution someone records).
    out["dispute_holds_closed_on_paid"] = _sql(
        conn,
        """
        UPDATE holds SET end_date = CASE WHEN holds.start_date > :d THEN holds.start_date ELSE :d END
        WHERE holds.end_date IS NULL AND holds.hold_type = 'dispute' AND holds.invoice_id IS NOT NULL
          AND EXISTS (SELECT 1 FROM invoices i WHERE i.id = holds.invoice_id AND i.status = 'paid')
        """,
        p,
    )
    return out


def _merge_payments(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    pays = _sql(
        conn,
        """
        INSERT INTO payments (entity_code, payment_ref, customer_id, payment_date, currency, amount, source)
        SELECT s.entity, s.payment_ref, MIN(c.id), MIN(s.payment_date), MIN(s.currency), MAX(s.amount), :src
        FROM stg_payments s JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        WHERE s.batch_id = :b
        GROUP BY s.entity, s.payment_ref
        ON CONFLICT (entity_code, payment_ref) DO NOTHING
        """,
        p,
    )
    inserted = _merge_allocations(conn, p)
    unmatched, on_protected = conn.execute(
        text(
            f"""
            SELECT COALESCE(SUM(CASE WHEN i.id IS NULL THEN 1 ELSE 0 END), 0),
                   COALESCE(SUM(CASE WHEN i.status IN {_PROTECTED_SQL} THEN 1 ELSE 0 END), 0)
            FROM stg_payments s
            LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
            WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL
            """
        ),
        {"b": p["b"]},
    ).one()
    return {
        "payments_inserted": pays,
        "allocations_inserted": inserted["regular"] + inserted["recovery"],
        "allocations_regular_inserted": inserted["regular"],
        "allocations_recovery_inserted": inserted["recovery"],
        "allocations_unmatched_invoice": int(unmatched),
        "payments_on_written_off_invoices": int(on_protected),
    }


_RECOVERY_SQL = sql_list(RECOVERY_STATUSES)


def _merge_allocations(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """Staged (payment, invoice, applied amount) rows become allocations, split into 'regular' and 'recovery'.

    - Invoice written off (status written_off / partially_recovered / recovered): all of it is 'recovery'.
    - Invoice partly written off and still (partly) on the books: the part that was never written off takes the
      cash first - room = amount - written_off_amount - regular allocations already recorded on the invoice,
      consumed by this load's new payments in (payment date, payment ref) order - and only the excess is
      'recovery'. The room is derived from the allocation history, not from ``open_balance``: the source's open
      balance is authoritative and has already been merged, i.e. it may already reflect this very payment.
    - Any other invoice (open, paid, charged_off, reversed): 'regular'. A charged-off invoice is still a receivable:
      its cash is a payment (the source's open balance shows it), never recovery income.

    Neither kind touches ``open_balance`` (the source's balance is authoritative for open invoices; a recovery is
    booked by :mod:`writeoffs.recoveries_pending`, which moves ``recovered_amount``).

    Only (payment, invoice) pairs with no allocation yet are classified: sources resend their payment history
    every day, and a payment recorded as 'regular' before the invoice was written off must not turn into recovery
    income when it shows up again afterwards. Re-runs insert nothing (and the unique key (payment_id, invoice_id,
    kind) would refuse a duplicate anyway).
    """
    # Money arithmetic here is exact on both databases (NUMERIC(20, 4) on PostgreSQL, integer ten-thousandths on
    # SQLite, see writeoffs.db.money): no rounding needed, only + and - of amounts. The regular allocations
    # already recorded are aggregated once (prior), not looked up per row: the statement inserts into the table it
    # reads, and a per-row subquery would rescan the rows it has just added (quadratic on a first load).
    ctes = f"""
        staged AS (
            SELECT pm.id AS payment_id, pm.payment_ref, i.id AS invoice_id, MIN(s.payment_date) AS paid_on,
                   SUM(COALESCE(s.applied_amount, s.amount)) AS applied
            FROM stg_payments s
            JOIN payments pm ON pm.entity_code = s.entity AND pm.payment_ref = s.payment_ref
            JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
            WHERE s.batch_id = :b
            GROUP BY pm.id, pm.payment_ref, i.id
        ),
        fresh AS (
            SELECT st.* FROM staged st
            WHERE st.applied > 0
              AND NOT EXISTS (SELECT 1 FROM payment_allocations a
                              WHERE a.payment_id = st.payment_id AND a.invoice_id = st.invoice_id)
        ),
        prior AS (
            SELECT a.invoice_id, SUM(a.amount) AS paid FROM payment_allocations a
            WHERE a.kind = 'regular' AND a.invoice_id IN (SELECT invoice_id FROM fresh)
            GROUP BY a.invoice_id
        ),
        roomy AS (
            SELECT f.payment_id, f.invoice_id, f.paid_on, f.applied, i.status,
                   CASE WHEN i.status IN {_RECOVERY_SQL} THEN 0
                        WHEN i.written_off_amount = 0 THEN f.applied
                        ELSE i.amount - i.written_off_amount - COALESCE(pr.paid, 0)
                             - COALESCE(SUM(f.applied) OVER (PARTITION BY f.invoice_id
                                                             ORDER BY f.paid_on, f.payment_ref, f.payment_id
                                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                   END AS room
            FROM fresh f JOIN invoices i ON i.id = f.invoice_id LEFT JOIN prior pr ON pr.invoice_id = f.invoice_id
        ),
        split AS (
            SELECT payment_id, invoice_id, paid_on, status, applied,
                   CASE WHEN room <= 0 THEN 0 WHEN room >= applied THEN applied ELSE room END AS regular
            FROM roomy
        )
    """
    rows = f"""
        SELECT payment_id, invoice_id, regular, paid_on, 'regular' FROM split
        WHERE regular > 0 AND status NOT IN {_PROTECTED_SQL}
        UNION ALL
        SELECT payment_id, invoice_id, applied - regular, paid_on, 'recovery' FROM split
        WHERE applied - regular > 0
    """
    insert = "INSERT INTO payment_allocations (payment_id, invoice_id, amount, allocated_on, kind)"
    conflict = "ON CONFLICT (payment_id, invoice_id, kind) DO NOTHING RETURNING kind"
    t0 = time.perf_counter()
    if conn.dialect.name == "postgresql":
        # Counted in the database: a first load can insert a million allocations.
        got = conn.execute(
            text(f"WITH {ctes}, ins AS ({insert} {rows} {conflict}) SELECT kind, COUNT(*) FROM ins GROUP BY kind"),
            {"b": p["b"]},
        ).all()
        counts = {kind: int(n) for kind, n in got}
    else:
        counts = {}
        for kind in conn.execute(text(f"WITH {ctes} {insert} {rows} {conflict}"), {"b": p["b"]}).scalars():
            counts[kind] = counts.get(kind, 0) + 1
    log.debug("%.2fs allocations %s", time.perf_counter() - t0, counts)
    return {"regular": counts.get("regular", 0), "recovery": counts.get("recovery", 0)}


def _merge_activities(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    # No natural key in the source: the k-th identical activity of a (customer, invoice, type, date) is its key,
    # so a re-load inserts nothing while two calls on the same day stay two calls.
    distinct = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    # Partitioned by the ledger's ids, not the source's references: the same partitions ((entity, customer ref)
    # is one customer id; an invoice ref is one invoice id, and a row whose ref matches no invoice is dropped by
    # the WHERE below; no ref is NULL either way), so the same occurrence numbers, but the sort of a first load
    # (1.85M activities at 1M invoices, spilled to disk) compares integers instead of text and carries only the
    # columns used (measured: BENCHMARKS.md).
    ranked = """
        SELECT s.activity_type, s.activity_date, s.end_date, s.outcome, c.id AS customer_id, i.id AS invoice_id,
               CAST(ROW_NUMBER() OVER (PARTITION BY c.id, i.id, s.activity_type, s.activity_date
                                       ORDER BY s.source_file, s.source_row)
                    AS VARCHAR(12)) AS occurrence
        FROM stg_activities s
        JOIN customers c ON c.entity_code = s.entity AND c.customer_ref = s.customer_ref
        LEFT JOIN invoices i ON i.entity_code = s.entity AND i.invoice_ref = s.invoice_ref
        WHERE s.batch_id = :b AND (s.invoice_ref IS NULL OR i.id IS NOT NULL)
    """
    same = """a.customer_id = r.customer_id AND a.source = :src AND a.activity_type = r.activity_type
              AND a.activity_date = r.activity_date AND a.source_ref = r.occurrence
              AND (a.invoice_id = r.invoice_id OR (a.invoice_id IS NULL AND r.invoice_id IS NULL))"""
    updated = _sql(
        conn,
        f"""
        UPDATE collection_activities SET end_date = r.end_date, outcome = r.outcome
        FROM ({ranked}) AS r
        WHERE collection_activities.customer_id = r.customer_id AND collection_activities.source = :src
          AND collection_activities.activity_type = r.activity_type
          AND collection_activities.activity_date = r.activity_date
          AND collection_activities.source_ref = r.occurrence
          AND (collection_activities.invoice_id = r.invoice_id
               OR (collection_activities.invoice_id IS NULL AND r.invoice_id IS NULL))
          AND (collection_activities.end_date {distinct} r.end_date
               OR collection_activities.outcome {distinct} r.outcome)
        """,
        p,
    )
    inserted = _sql(
        conn,
        f"""
        INSERT INTO collection_activities (customer_id, invoice_id, activity_type, activity_date, end_date, outcome,
                                           source, source_ref)
        SELECT r.customer_id, r.invoice_id, r.activity_type, r.activity_date, r.end_date, r.outcome,
               CAST(:src AS VARCHAR(64)), r.occurrence
        FROM ({ranked}) AS r
        WHERE NOT EXISTS (SELECT 1 FROM collection_activities a WHERE {same})
        """,
        p,
    )
    unmatched = conn.execute(
        text(
            "SELECT COUNT(*) FROM stg_activities s LEFT JOIN invoices i ON i.entity_code = s.entity "
            "AND i.invoice_ref = s.invoice_ref WHERE s.batch_id = :b AND s.invoice_ref IS NOT NULL AND i.id IS NULL"
        ),
        {"b": p["b"]},
    ).scalar_one()
    return {"activities_inserted": inserted, "activities_updated": updated, "activities_unmatched_invoice": unmatched}


def _post_ar_sync(
    conn: Connection,
    source: str,
    as_of: date,
    load_no: int,
    before: dict[tuple[str, str], tuple[Decimal, Decimal]],
    after: dict[tuple[str, str], tuple[Decimal, Decimal]],
    actor: str,
) -> tuple[list[dict[str, str]], list[str]]:
    bulk.require_origin(conn)  # the ledger's own triggers must see the AR sync entry
    entries: list[JournalEntry] = []
    notes: list[str] = []
    accts: dict[str, Any] = {}
    for entity, currency in sorted(set(before) | set(after)):
        b_txn, b_fun = before.get((entity, currency), (Decimal(0), Decimal(0)))
        a_txn, a_fun = after.get((entity, currency), (Decimal(0), Decimal(0)))
        if entity not in accts:
            accts[entity] = resolve_accounts(conn, entity)
        d_txn = round_money(a_txn - b_txn, currency)
        d_fun = round_money(a_fun - b_fun, accts[entity].functional_currency)
        if d_txn == 0 and d_fun == 0:
            continue
        if d_txn == 0 or (d_fun != 0 and (d_txn > 0) != (d_fun > 0)):
            # An fx-rate-only change moves functional AR without moving the invoice currency: it needs a
            # revaluation entry, which is not this feature's to post. Reported so reconciliation can explain it.
            notes.append(f"{entity} {currency}: functional AR moved {d_fun} without a matching {currency} change")
            continue
        entries.append(
            entry_rules.ar_sync(
                accts[entity],
                source=source,
                as_of=as_of,
                load_no=load_no,
                currency=currency,
                change=d_txn,
                functional_change=d_fun,
            )
        )
    result = ledger.post_entries(conn, entries, created_by=actor)
    ar = {entity: a.role("ar_control") for entity, a in accts.items()}
    posted = [
        {
            "key": e.key,
            "entity": e.entity,
            "currency": e.lines[0].currency,
            "net_change": money_str(
                sum((ln.debit - ln.credit for ln in e.lines if ln.account == ar[e.entity]), Decimal(0))
            ),
            "entry_id": str(result.posted.get(e.key) or result.already.get(e.key)),
        }
        for e in entries
    ]
    return posted, notes
