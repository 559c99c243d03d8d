"""Set-wise reads for the workspace: one page of a batch's items, their totals, the CSV stream, reconciliation.

A page is one query over the batch's items (ORDER BY the chosen key, the item id as tie-breaker, LIMIT/OFFSET)
joined to its invoices and customers; the totals and the reasons of the filter are one aggregate each. Nothing
reads item by item, so a 100,000-item batch's page costs a sort of the batch's rows, not 100,000 round trips.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Engine, func, select

from writeoffs.approval_view import CSV_COLUMNS, ITEM_COLUMNS, BatchItem, item_of, items_source
from writeoffs.db.schema import invoices, recon_breaks, recon_runs, writeoff_batches, writeoffs
from writeoffs.safe_text import csv_writer

#: Sort keys offered on the batch page (query value -> what it means).
SORTS = ("amount", "days_past_due", "invoice")
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
#: Rows fetched per round trip while streaming the CSV.
CSV_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class PageQuery:
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    sort: str = "amount"
    descending: bool = True
    reason: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: tuple[BatchItem, ...]
    matching: int  # items matching the filter
    matching_total: Decimal
    reasons: tuple[tuple[str, int], ...]  # every reason of the batch with its item count
    pending: int = 0  # items still in play (not excluded, rejected, ...)
    pending_total: Decimal = Decimal(0)


def batch_row(conn: Connection, batch_id: int):
    return conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()


def item_page(conn: Connection, batch, q: PageQuery) -> ItemPage:
    """One page of the batch's items (any status), sorted and filtered; plus the counts the page header shows.

    Three statements whatever the batch's size: the page's ids from a narrow sort (the items alone, or with their
    invoice's due date or ref), the wide rows (customer, evidence) of those ids only, and one aggregate per reason and
    status that gives the filter's count and total, the reasons and what is still in play."""
    from writeoffs.approval_view import NOT_POSTED_STATUSES

    where = [writeoffs.c.batch_id == batch.id]
    if q.reason:
        where.append(writeoffs.c.reason_code == q.reason)
    # Days past due grow as the due date gets older: sorting by it is sorting by due date the other way round.
    key = {
        "amount": writeoffs.c.amount,
        "days_past_due": invoices.c.due_date,
        "invoice": invoices.c.invoice_ref,
    }[q.sort]
    source = writeoffs if q.sort == "amount" else writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id)
    descending = q.descending if q.sort != "days_past_due" else not q.descending
    order = [key.desc() if descending else key.asc(), writeoffs.c.id.desc() if descending else writeoffs.c.id.asc()]
    ids = list(
        conn.execute(
            select(writeoffs.c.id).select_from(source).where(*where).order_by(*order).limit(q.size).offset(q.offset)
        ).scalars()
    )
    rows = {}
    if ids:
        rows = {
            r.id: r
            for r in conn.execute(select(*ITEM_COLUMNS).select_from(items_source()).where(writeoffs.c.id.in_(ids)))
        }
    groups = conn.execute(
        select(
            writeoffs.c.reason_code,
            writeoffs.c.status,
            func.count().label("n"),
            func.coalesce(func.sum(writeoffs.c.amount), 0).label("total"),
        )
        .where(writeoffs.c.batch_id == batch.id)
        .group_by(writeoffs.c.reason_code, writeoffs.c.status)
    ).all()
    reasons: dict[str, int] = {}
    for g in groups:
        reasons[str(g.reason_code)] = reasons.get(str(g.reason_code), 0) + int(g.n)
    chosen = [g for g in groups if not q.reason or g.reason_code == q.reason]
    in_play = [g for g in groups if g.status not in NOT_POSTED_STATUSES]
    return ItemPage(
        items=tuple(item_of(rows[i], batch.as_of_date) for i in ids if i in rows),
        matching=sum(int(g.n) for g in chosen),
        matching_total=sum((Decimal(g.total) for g in chosen), Decimal(0)),
        reasons=tuple(sorted(reasons.items())),
        pending=sum(int(g.n) for g in in_play),
        pending_total=sum((Decimal(g.total) for g in in_play), Decimal(0)),
    )


def candidates_csv(engine: Engine, batch_id: int) -> Iterator[str]:
    """Every item of the batch, as CSV text chunks (the columns of the request's CSV file), streamed from a
    server-side cursor; text cells that look like formulas are neutralised (:func:`writeoffs.safe_text.csv_cell`)."""
    with engine.connect() as conn:
        batch = batch_row(conn, batch_id)
        if batch is None:
            return
        buf = io.StringIO()
        w = csv_writer(buf)
        w.writerow(CSV_COLUMNS)
        result = conn.execution_options(stream_results=True, yield_per=CSV_CHUNK).execute(
            select(*ITEM_COLUMNS)
            .select_from(items_source())
            .where(writeoffs.c.batch_id == batch_id)
            .order_by(writeoffs.c.amount.desc(), writeoffs.c.id.desc())
        )
        for chunk in result.partitions(CSV_CHUNK):
            for r in chunk:
                i = item_of(r, batch.as_of_date)
                w.writerow(
                    [
                        batch.id,
                        i.invoice_ref,
                        i.customer_ref,
                        i.customer_name,
                        batch.currency,
                        format(i.amount, "f"),
                        i.days_past_due,
                        i.bucket,
                        i.reason_code,
                        i.rule,
                        i.status,
                        json.dumps(i.evidence, sort_keys=True, default=str),
                    ]
                )
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        if buf.tell():
            yield buf.getvalue()


# ------------------------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True, slots=True)
class ReconView:
    run: object | None  # the latest recon_runs row
    breaks: tuple[object, ...]  # its breaks, by entity, currency, check
    pairs: tuple[tuple[str, str, int], ...]  # (entity, currency, breaks) of the latest run
    recent: tuple[object, ...]  # the latest runs (newest first)


def reconciliation(conn: Connection, *, recent: int = 10, max_breaks: int = 500) -> ReconView:
    """The latest run (by business date, then id), its open breaks and the runs before it."""
    runs = conn.execute(
        select(recon_runs).order_by(recon_runs.c.as_of_date.desc(), recon_runs.c.id.desc()).limit(recent)
    ).all()
    if not runs:
        return ReconView(None, (), (), ())
    latest = runs[0]
    breaks = conn.execute(
        select(recon_breaks)
        .where(recon_breaks.c.run_id == latest.id)
        .order_by(recon_breaks.c.entity_code, recon_breaks.c.currency, recon_breaks.c.check_name, recon_breaks.c.id)
        .limit(max_breaks)
    ).all()
    pairs = conn.execute(
        select(recon_breaks.c.entity_code, recon_breaks.c.currency, func.count())
        .where(recon_breaks.c.run_id == latest.id)
        .group_by(recon_breaks.c.entity_code, recon_breaks.c.currency)
        .order_by(recon_breaks.c.entity_code, recon_breaks.c.currency)
    ).all()
    return ReconView(
        latest, tuple(breaks), tuple((str(e or "-"), str(c or "-"), int(n)) for e, c, n in pairs), tuple(runs)
    )


def latest_business_date(conn: Connection) -> date | None:
    return conn.execute(select(func.max(writeoff_batches.c.as_of_date))).scalar()
