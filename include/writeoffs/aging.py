"""AR aging snapshots, computed set-wise in SQL as of a business date.

``compute_aging`` replaces the snapshot of one date in one transaction (``aging_runs`` + ``aging_snapshots``), so
it can be re-run for any past date. Each invoice with an open balance raised on or before the date is bucketed by
days past due (or days since invoice date) with :func:`writeoffs.buckets.bucket_case`.

What a recomputation for a past date sees: the dates are the past date's (days past due, which invoices existed),
the balances are those the sub-ledger holds when it runs. The snapshot taken on the day is kept until it is
recomputed, which is what period-end reporting should use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Date, delete, func, insert, literal, select, text

from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case
from writeoffs.db import bulk, dialect
from writeoffs.db.schema import aging_runs, aging_snapshots, invoices
from writeoffs.money import money_str

Basis = Literal["due_date", "invoice_date"]

#: Smallest ledger (invoices) for which a PostgreSQL snapshot is written in bulk mode (writeoffs.db.bulk).
BULK_MIN_ROWS = 100_000


def days_since(conn: Connection, as_of: date, column: Any) -> Any:
    """Whole days from ``column`` to ``as_of`` as an SQL expression (the adapter spells it per database)."""
    return dialect.of(conn).days_between(as_of, column)


def compute_aging(
    conn: Connection,
    as_of: date,
    *,
    basis: Basis = "due_date",
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
) -> dict[str, Any]:
    """(Re)compute the snapshot for ``as_of`` inside the caller's transaction; returns a JSON-safe summary."""
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"aging basis must be due_date or invoice_date, not {basis!r}")
    taken_at = datetime.now(UTC)  # the snapshot's cut-off (allowance estimates compare write-offs posted after it)
    dpd = days_since(conn, as_of, invoices.c[basis])
    if dialect.of(conn).row_locks:
        # One snapshot writer at a time (SHARE ROW EXCLUSIVE conflicts with itself, not with readers): the first
        # snapshot's bulk path then upgrades to the key drop's ACCESS EXCLUSIVE lock without a second writer holding
        # the table (two first agings at once would otherwise deadlock on the upgrade).
        conn.execute(text("LOCK TABLE aging_snapshots IN SHARE ROW EXCLUSIVE MODE"))
    conn.execute(delete(aging_snapshots).where(aging_snapshots.c.as_of_date == as_of))
    conn.execute(delete(aging_runs).where(aging_runs.c.as_of_date == as_of))
    mode = _enter_bulk(conn)
    if mode is not None:
        # Before the copy, not only at bulk.leave(): every snapshot row's keys (invoice, customer) are read from an
        # invoice row in this statement, and with no writer until the commit none of them can go. Re-checking
        # 900,000 copied keys cost 1.5 s of a 1M-invoice ingest (BENCHMARKS.md); the other tables' keys are checked.
        conn.execute(text("LOCK TABLE invoices IN SHARE MODE"))
    source = select(
        literal(as_of, Date),
        invoices.c.id,
        invoices.c.entity_code,
        invoices.c.customer_id,
        invoices.c.currency,
        dpd,
        bucket_case(dpd, buckets),
        invoices.c.open_balance,
    ).where(invoices.c.open_balance > 0, invoices.c.invoice_date <= as_of)
    count = conn.execute(
        insert(aging_snapshots).from_select(
            [
                "as_of_date",
                "invoice_id",
                "entity_code",
                "customer_id",
                "currency",
                "days_past_due",
                "bucket",
                "open_balance",
            ],
            source,
        )
    ).rowcount
    if mode is not None:
        # Only this date's rows were written with the FK trigger off; invoices is locked as a whole (SHARE) rather
        # than row by row for the check to hold until commit.
        bulk.leave(
            conn,
            mode,
            context=f"aging snapshot {as_of}",
            where={"aging_snapshots": f"c.as_of_date = DATE '{as_of.isoformat()}'"},
            table_locks=frozenset({"invoices"}),
            proven=frozenset({"aging_snapshots"}),
        )
    spec = [{"label": b.label, "low": b.low, "high": b.high} for b in buckets]
    conn.execute(
        insert(aging_runs).values(
            as_of_date=as_of,
            basis=basis,
            bucket_spec=json.dumps(spec),
            invoice_count=int(count or 0),
            computed_at=taken_at,
        )
    )
    return summary(conn, as_of, buckets)


def _enter_bulk(conn: Connection) -> bulk.BulkMode | None:
    """PostgreSQL, a big ledger: the snapshot goes in with the per-row FK trigger off (checked set-wise after).

    The snapshot's indexes stay while the table keeps other dates: a rebuild would cover every date the table
    keeps. The ledger's first snapshot (or a re-run of the only date stored) goes into an empty table, and there its
    key and index are built after the copy instead (``rebuild_if_empty``): 1.83 s against 3.08 s for 893,060 rows
    (docs/ingestion.md). Dropping the key locks the table: its readers wait for that step's commit.
    """
    if not dialect.of(conn).bulk_copy:
        return None
    bulk.set_local_work_mem(conn)
    n = conn.execute(
        text("SELECT count(*) FROM (SELECT 1 FROM invoices LIMIT :cap) AS i"), {"cap": BULK_MIN_ROWS}
    ).scalar_one()
    if n < BULK_MIN_ROWS:
        return None
    return bulk.enter(
        conn,
        {"aging_snapshots": aging_snapshots},
        drop_indexes=False,
        rebuild_if_empty=frozenset({"aging_snapshots"}),
    )


def summary(conn: Connection, as_of: date, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> dict[str, Any]:
    """Totals per entity, currency and bucket for a stored snapshot (Decimal strings)."""
    s = aging_snapshots.c
    rows = conn.execute(
        select(s.entity_code, s.currency, s.bucket, func.count(), func.sum(s.open_balance))
        .where(s.as_of_date == as_of)
        .group_by(s.entity_code, s.currency, s.bucket)
    ).all()
    return summarise(rows, as_of, buckets)


def summarise(rows: Sequence[Any], as_of: date, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> dict[str, Any]:
    """``(entity, currency, bucket, invoices, open balance)`` rows as an aging summary (one shape for the stored
    snapshot and the aging from movements, :func:`writeoffs.subledger.aging_as_of`)."""
    order = {b.label: i for i, b in enumerate(buckets)}
    out: dict[str, dict[str, Any]] = {}
    invoices_n = 0
    for entity, currency, bucket, n, total in sorted(rows, key=lambda r: (r[0], r[1], order.get(r[2], 99))):
        key = f"{entity}/{currency}"
        entry = out.setdefault(key, {"total": Decimal(0), "buckets": {}})
        amount = Decimal(str(total)).quantize(Decimal("0.01"))
        entry["buckets"][bucket] = {"invoices": int(n), "open_balance": money_str(amount)}
        entry["total"] += amount
        invoices_n += int(n)
    for entry in out.values():
        entry["total"] = money_str(entry["total"])
    return {"as_of": as_of.isoformat(), "invoices": invoices_n, "by_entity_currency": out}
