"""The re-check's data: the next chunk of approved items, read with their invoices locked (:class:`_Item`,
:func:`_recheck_rows`), and ONE set-wise findings query per chunk (:func:`_findings_query`, :func:`_findings`):
late payments, holds, as-of balance changes, other write-offs posted, parent/child, set on each item.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Integer,
    String,
    and_,
    cast,
    column,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql import bindparam

from writeoffs.db import dialect
from writeoffs.db.schema import (
    aging_snapshots,
    customers,
    holds,
    invoices,
    payment_allocations,
    payments,
    writeoffs,
)
from writeoffs.posting.model import _Context


@dataclass(slots=True)
class _Item:
    """One item of a chunk, as :func:`skip_reason` re-checks it against the live sub-ledger.

    The sub-ledger columns come from the locking read; the findings (payment after the as-of date, hold, balance
    changed since the as-of snapshot, another write-off posted, parent/child) default to "nothing found" and are set
    by :func:`_findings` for the few items where something was found.
    """

    id: int
    invoice_id: int
    amount: Decimal
    currency: str
    reason_code: str
    idempotency_key: str
    policy_version: str
    created_at: Any
    invoice_ref: str
    open_balance: Decimal
    invoice_status: str
    invoice_currency: str
    entity_code: str
    fx_rate: Decimal
    invoice_amount: Decimal
    transferred: bool
    customer_id: int
    as_of_date: date
    late_payment: bool = False
    on_hold: bool = False
    asof_balance: Decimal | None = None  # the as-of snapshot's balance, set only where it differs from open_balance
    other_posted_at: Any = None
    parent_id: int | None = None
    segment: str | None = None  # the customer's segment, read for child accounts (the only ones that need it)
    parent_paid: bool = False


def _recheck_rows(conn: Connection, ctx: _Context, chunk_size: int) -> list[_Item]:
    """The next chunk of approved items (rows locked) with everything needed to re-check them against the live
    sub-ledger: one locking read of the items and their invoices, then one set-wise query for the findings."""
    w, i = writeoffs, invoices
    # The chunk's ids first, then the wide row: sorting every remaining approved item's joined row to keep the first
    # chunk_size spilled to disk (measured: 0.11 s of a chunk's 0.15 s at 50,000 items).
    chunk = writeoffs.alias("chunk")
    next_ids = (
        select(chunk.c.id)
        .where(chunk.c.batch_id == ctx.batch_id, chunk.c.status == "approved")
        .order_by(chunk.c.id)
        .limit(chunk_size)
    )
    q = (
        select(
            w.c.id,
            w.c.invoice_id,
            w.c.amount,
            w.c.currency,
            w.c.reason_code,
            w.c.idempotency_key,
            w.c.policy_version,
            w.c.created_at,
            i.c.invoice_ref,
            i.c.open_balance,
            i.c.status,
            i.c.currency,
            i.c.entity_code,
            i.c.fx_rate,
            i.c.amount,
            i.c.balance_transferred_to_parent,
            i.c.customer_id,
            w.c.as_of_date,
        )
        .select_from(w.join(i, i.c.id == w.c.invoice_id))
        .where(w.c.id.in_(next_ids))
        .order_by(w.c.id)
    )
    if dialect.of(conn).row_locks:
        # Lock the invoices (a payment or another write-off touching them waits until this chunk commits) and the
        # items (checked against the approval below, then read again by the set-wise SQL: nobody may edit them in
        # between).
        q = q.with_for_update(of=[i, w])
    items = [_Item(*r) for r in conn.execute(q).all()]  # fetchall: row-by-row fetching costs more than the query
    if items:
        _findings(conn, ctx, items)
    return items


# What a row of the findings query says about its item (column ``kind``).
_LATE_PAYMENT, _ON_HOLD, _ASOF_BALANCE, _OTHER_POSTED, _CHILD, _PARENT_PAID = range(1, 7)
#: The chunk's columns the findings query needs, sent as PostgreSQL arrays (see :func:`_findings_query`).
_CHUNK_ARRAYS = (
    ("id", BigInteger),
    ("invoice_id", BigInteger),
    ("customer_id", BigInteger),
    ("as_of_date", Date),
    ("open_balance", invoices.c.open_balance.type),
)


@functools.lru_cache(maxsize=8)
def _findings_query(d: dialect.Dialect):
    """The findings statement (built once per database; parameters: the chunk, ``posting_date``).

    The chunk comes from the locking read: on PostgreSQL as one array literal per column (``'{1,2,3}'::BIGINT[]``,
    unnested), so that no join depends on the statistics of ``writeoffs`` (stale while a batch changes status under
    posting: a join of the chunk with "posted" write-offs estimated at one row ran 14 s per chunk); on SQLite (single
    writer lock held) as the chunk's id range, ids outside the chunk being ignored by the caller. The other write-offs
    of an invoice are looked up per item through their invoice index, for the same reason.
    """
    c = _chunk_items(d)
    pa = payment_allocations
    late = exists(
        select(1)
        .select_from(pa.join(payments, payments.c.id == pa.c.payment_id))
        .where(
            pa.c.invoice_id == c.c.invoice_id,
            pa.c.kind == "regular",
            or_(payments.c.payment_date > c.c.as_of_date, pa.c.allocated_on > c.c.as_of_date),
        )
    )
    active = or_(holds.c.end_date.is_(None), holds.c.end_date >= bindparam("posting_date", type_=Date))
    invoice_hold = exists(select(1).where(holds.c.invoice_id == c.c.invoice_id, active))
    customer_hold = exists(
        select(1).where(holds.c.invoice_id.is_(None), holds.c.customer_id == c.c.customer_id, active)
    )
    snap = aging_snapshots
    other = writeoffs.alias("other")
    other_posted = (
        select(
            c.c.id,
            select(func.max(other.c.posted_at))
            .where(other.c.invoice_id == c.c.invoice_id, other.c.id != c.c.id, other.c.status == "posted")
            .scalar_subquery()
            .label("stamp"),
        )
        .select_from(c)
        .subquery("other_posted")
    )
    cust = customers.alias("cust")
    payer = payments.alias("payer")
    parent_paid = exists(
        select(1)
        .select_from(pa.join(payer, payer.c.id == pa.c.payment_id))
        .where(pa.c.invoice_id == c.c.invoice_id, pa.c.kind == "regular", payer.c.customer_id == cust.c.parent_id)
    )
    child = c.join(cust, cust.c.id == c.c.customer_id)
    return union_all(
        select(*_found_columns(c, _LATE_PAYMENT)).select_from(c).where(late),
        select(*_found_columns(c, _ON_HOLD)).select_from(c).where(invoice_hold),
        select(*_found_columns(c, _ON_HOLD)).select_from(c).where(customer_hold),
        select(*_found_columns(c, _ASOF_BALANCE, money=snap.c.open_balance))
        .select_from(c.join(snap, and_(snap.c.as_of_date == c.c.as_of_date, snap.c.invoice_id == c.c.invoice_id)))
        .where(snap.c.open_balance != c.c.open_balance),
        select(*_found_columns(other_posted, _OTHER_POSTED, stamp=other_posted.c.stamp)).where(
            other_posted.c.stamp.is_not(None)
        ),
        select(*_found_columns(c, _CHILD, parent=cust.c.parent_id, segment=cust.c.segment))
        .select_from(child)
        .where(cust.c.parent_id.is_not(None)),
        select(*_found_columns(c, _PARENT_PAID)).select_from(child).where(cust.c.parent_id.is_not(None), parent_paid),
    )


def _chunk_items(d: dialect.Dialect):
    """The chunk's items (CTE ``chunk_items``): unnested from the parameter arrays on PostgreSQL, read by id range on
    SQLite (see :func:`_findings_query`)."""
    if d.arrays:
        arrays = (
            func.unnest(
                *(
                    cast(bindparam(f"chunk_{name}", type_=String), dialect.ARRAY(getattr(type_, "impl", type_)))
                    for name, type_ in _CHUNK_ARRAYS
                )
            )
            .table_valued(*(column(name, type_) for name, type_ in _CHUNK_ARRAYS))
            .render_derived(name="chunk")
        )
        return select(*arrays.c).cte("chunk_items")
    else:
        w, i = writeoffs, invoices
        return (
            select(w.c.id, w.c.invoice_id, i.c.customer_id, w.c.as_of_date, i.c.open_balance)
            .select_from(w.join(i, i.c.id == w.c.invoice_id))
            .where(w.c.batch_id == bindparam("batch_id"), w.c.id.between(bindparam("lo"), bindparam("hi")))
            .cte("chunk_items")
        )


def _found_columns(source, kind: int, *, money=None, stamp=None, parent=None, segment=None) -> list:
    """The columns of one branch of the findings query: the item, the finding's kind and what it found."""

    # The same columns with the same types in every branch: typed NULLs (PostgreSQL would type a column that
    # starts with untyped NULLs as text; SQLAlchemy types the result from the first branch).
    def typed(value, col):
        return cast(null(), col.type) if value is None else value

    return [
        source.c.id,
        literal_column(str(kind), Integer).label("kind"),
        typed(money, aging_snapshots.c.open_balance).label("money"),
        typed(stamp, writeoffs.c.posted_at).label("stamp"),
        typed(parent, customers.c.parent_id).label("parent_id"),
        typed(segment, customers.c.segment).label("segment"),
    ]


def _findings(conn: Connection, ctx: _Context, items: list[_Item]) -> None:
    """Set on ``items`` what the live sub-ledger says against posting them: ONE set-wise query, run after the chunk's
    rows are locked (it sees everything committed before the locks were granted), that returns only the items it
    finds something for: a payment allocated after the as-of date, an active hold on the invoice or its customer, an
    as-of snapshot balance that differs from the open balance, the latest posting of another write-off of the invoice,
    and for child accounts the parent, the segment and whether the parent paid part of the invoice.
    """
    by_id = {it.id: it for it in items}
    params: dict[str, Any] = {"posting_date": ctx.posting_date}
    if dialect.of(conn).arrays:
        # One array literal per column: the driver's per-element adaptation of 5,000-element lists costs more than
        # the query. ``str`` of these ints, dates and Decimals is valid PostgreSQL input; none is NULL (NOT NULL
        # columns) or needs quoting.
        for name, _ in _CHUNK_ARRAYS:
            params[f"chunk_{name}"] = "{" + ",".join(map(str, map(attrgetter(name), items))) + "}"
    else:
        params |= {"batch_id": ctx.batch_id, "lo": items[0].id, "hi": items[-1].id}
    for wid, kind, money, stamp, parent, segment in conn.execute(_findings_query(dialect.of(conn)), params).all():
        it = by_id.get(wid)
        if it is None:
            continue
        if kind == _LATE_PAYMENT:
            it.late_payment = True
        elif kind == _ON_HOLD:
            it.on_hold = True
        elif kind == _ASOF_BALANCE:
            it.asof_balance = money
        elif kind == _OTHER_POSTED:
            it.other_posted_at = stamp
        elif kind == _CHILD:
            it.parent_id, it.segment = parent, segment
        else:
            it.parent_paid = True
