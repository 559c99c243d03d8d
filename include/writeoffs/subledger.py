"""The point-in-time sub-ledger: invoice balances, aging and changes for any past date, from immutable movements.

``invoices`` holds the current balances (materialised: selection, posting and today's aging read them);
``invoice_movements`` holds every change of an invoice's open balance or status, written by the database in the
statement that changes the invoice (migration 0013). Two dates per movement:

- ``effective_date``: the business date of the change (an ingest load's as-of date, a write-off's posting date, a
  recovery's date, a reversal's posting date; an invoice's first movement is dated its invoice date);
- ``recorded_at``: when the ledger learned it (the database's UTC clock).

So "as of 31 March, as known today" sums the movements effective on or before 31 March; "as known on 31 March" also
leaves out what was recorded after that day: an extract of 31 March loaded on 3 April (late) shows in the first and
not in the second.

Why a balance moved is declared once per change, by the function that makes it, with :func:`movement` (one home per
rule: merge, charge-off, write-off posting, recovery, reversal, clearing a reversal). A change nobody declared (raw
SQL) is still recorded, as kind ``direct`` dated the day it was made.

Every question below is ONE query (set-wise, ``GROUP BY``), on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, func, literal, select, text

from writeoffs.aging import Basis, days_since, summarise
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case
from writeoffs.db.schema import MOVEMENT_KINDS, customers, invoice_movements, invoices
from writeoffs.errors import WriteoffError

Level = Literal["invoice", "customer", "entity", "currency"]
#: "As known at": None (everything recorded), a date (by the end of that day, UTC), a moment, or a recorded_at value.
Known = date | datetime | str | None
LEVELS: tuple[str, ...] = ("invoice", "customer", "entity", "currency")
#: The SQLite table its triggers read the declared context from (migration 0013; SQLite only).
_SQLITE_CONTEXT = "invoice_movement_context"
_PG_SETTINGS = ("writeoffs.movement_kind", "writeoffs.movement_date", "writeoffs.movement_ref")


# --- declaring why a balance moves ----------------------------------------------------------------------------------


@contextmanager
def movement(conn: Connection, kind: str, effective_date: date, ref: str | None = None) -> Iterator[None]:
    """Declare, for the statements run inside, why invoices move: ``kind``, business date, document.

    The triggers of migration 0013 read it; it is cleared on the way out so that a later statement of the same
    transaction cannot borrow it. (On an error the transaction is rolled back, and the declaration with it.)
    """
    if kind not in MOVEMENT_KINDS or kind in ("opening", "direct"):
        raise WriteoffError(f"unknown movement kind {kind!r}")
    ref = None if ref is None else str(ref)[:200]
    if conn.dialect.name == "postgresql":
        _pg_set(conn, kind, effective_date.isoformat(), ref or "")
        yield
        _pg_set(conn, "", "", "")
        return
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))
    conn.execute(
        text(f"INSERT INTO {_SQLITE_CONTEXT} (kind, effective_date, ref) VALUES (:k, :d, :r)"),
        {"k": kind, "d": effective_date.isoformat(), "r": ref},
    )
    yield
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))


def _pg_set(conn: Connection, kind: str, day: str, ref: str) -> None:
    conn.execute(
        text("SELECT set_config(:a, :k, true), set_config(:b, :d, true), set_config(:c, :r, true)"),
        dict(zip(("a", "b", "c"), _PG_SETTINGS, strict=True)) | {"k": kind, "d": day, "r": ref},
    )


# --- the two dates ----------------------------------------------------------------------------------------------------


def recorded_text(moment: datetime) -> str:
    """A moment in ``recorded_at``'s text form, UTC (it compares as text, in time order); naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _known_filter(known: Known) -> Any:
    """``recorded_at`` condition for "as known at": a date means the end of that day (UTC); a string is a
    ``recorded_at`` value (e.g. :func:`last_recorded` at some point)."""
    m = invoice_movements.c
    if known is None:
        return literal(True)
    if isinstance(known, str):
        return m.recorded_at <= known
    if isinstance(known, datetime):
        return m.recorded_at <= recorded_text(known)
    return m.recorded_at < recorded_text(datetime.combine(known + timedelta(days=1), time()))


def last_recorded(conn: Connection) -> str | None:
    """The newest ``recorded_at`` (a "known at" moment that includes everything recorded so far)."""
    return conn.execute(select(func.max(invoice_movements.c.recorded_at))).scalar()


# --- balances ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Balance:
    entity: str  # '' at currency level
    currency: str
    key: str  # invoice ref, customer ref, entity code or currency, per level
    balance: Decimal
    invoices: int  # invoices with an open balance


def _filters(entity: str | None, currency: str | None, customer_ref: str | None, invoice_ref: str | None) -> list:
    i, c = invoices.c, customers.c
    out = []
    if entity:
        out.append(i.entity_code == entity)
    if currency:
        out.append(i.currency == currency)
    if customer_ref:
        out.append(c.customer_ref == customer_ref)
    if invoice_ref:
        out.append(i.invoice_ref == invoice_ref)
    return out


def balances_as_of(
    conn: Connection,
    as_of: date,
    *,
    level: Level = "entity",
    known: Known = None,
    entity: str | None = None,
    currency: str | None = None,
    customer_ref: str | None = None,
    invoice_ref: str | None = None,
) -> list[Balance]:
    """Open balances at the end of ``as_of`` per invoice, customer, entity (and currency) or currency: one query.

    ``known``: only what the ledger had recorded by then (a date: by the end of that day, UTC).
    """
    if level not in LEVELS:
        raise WriteoffError(f"balance level must be one of {', '.join(LEVELS)}, not {level!r}")
    m, i, c = invoice_movements.c, invoices.c, customers.c
    key = {"invoice": i.invoice_ref, "customer": c.customer_ref, "entity": i.entity_code, "currency": i.currency}[level]
    ent = literal("") if level == "currency" else i.entity_code
    per_invoice = (
        select(m.invoice_id, func.sum(m.balance_change).label("balance"))
        .where(m.effective_date <= as_of, _known_filter(known))
        .group_by(m.invoice_id)
        .subquery()
    )
    q = (
        select(
            ent.label("entity"),
            i.currency,
            key.label("key"),
            func.sum(per_invoice.c.balance),
            func.count().filter(per_invoice.c.balance > 0),
        )
        .select_from(
            per_invoice.join(invoices, invoices.c.id == per_invoice.c.invoice_id).join(
                customers, customers.c.id == i.customer_id
            )
        )
        .where(*_filters(entity, currency, customer_ref, invoice_ref))
        .group_by(ent, i.currency, key)
        .order_by(ent, i.currency, key)
    )
    return [Balance(e, cur, k, Decimal(bal or 0), int(n or 0)) for e, cur, k, bal, n in conn.execute(q)]


# --- aging ------------------------------------------------------------------------------------------------------------


def aging_as_of(
    conn: Connection,
    as_of: date,
    *,
    basis: Basis = "due_date",
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    known: Known = None,
) -> dict[str, Any]:
    """The aging of ``as_of`` from movements (the same shape as :func:`writeoffs.aging.summary`): one query.

    Each invoice raised on or before the date with an open balance at the end of it, bucketed by days past due (or
    since invoice date) on that date. Nothing is stored: a past month end needs no snapshot taken on the day.
    """
    if basis not in ("due_date", "invoice_date"):
        raise ValueError(f"aging basis must be due_date or invoice_date, not {basis!r}")
    m, i = invoice_movements.c, invoices.c
    per_invoice = (
        select(m.invoice_id, func.sum(m.balance_change).label("balance"))
        .where(m.effective_date <= as_of, _known_filter(known))
        .group_by(m.invoice_id)
        .subquery()
    )
    dpd = days_since(conn, as_of, i[basis])
    bucket = bucket_case(dpd, buckets).label("bucket")
    q = (
        select(i.entity_code, i.currency, bucket, func.count(), func.sum(per_invoice.c.balance))
        .select_from(per_invoice.join(invoices, invoices.c.id == per_invoice.c.invoice_id))
        .where(per_invoice.c.balance > 0, i.invoice_date <= as_of)
        .group_by(i.entity_code, i.currency, bucket)
    )
    return summarise(conn.execute(q).all(), as_of, buckets)


def aging_current(
    conn: Connection, as_of: date, *, basis: Basis = "due_date", buckets: Sequence[Bucket] = DEFAULT_BUCKETS
) -> dict[str, Any]:
    """Today's balances aged on ``as_of`` (what a snapshot taken now would hold), without storing anything."""
    i = invoices.c
    dpd = days_since(conn, as_of, i[basis])
    bucket = bucket_case(dpd, buckets).label("bucket")
    q = (
        select(i.entity_code, i.currency, bucket, func.count(), func.sum(i.open_balance))
        .where(i.open_balance > 0, i.invoice_date <= as_of)
        .group_by(i.entity_code, i.currency, bucket)
    )
    return summarise(conn.execute(q).all(), as_of, buckets)


# --- what changed -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    entity: str
    currency: str
    kind: str
    movements: int
    invoices: int
    balance_change: Decimal


def changes_between(
    conn: Connection,
    start: date,
    end: date,
    *,
    known: Known = None,
    entity: str | None = None,
    currency: str | None = None,
    customer_ref: str | None = None,
    invoice_ref: str | None = None,
) -> list[Change]:
    """What moved after ``start`` up to and including ``end`` (effective dates), per entity, currency and kind.

    The balance as of ``end`` is the balance as of ``start`` plus these changes (tested): one query.
    """
    if end < start:
        raise WriteoffError(f"changes between {start} and {end}: the end is before the start")
    m, i = invoice_movements.c, invoices.c
    q = (
        select(
            i.entity_code,
            i.currency,
            m.kind,
            func.count(),
            func.count(m.invoice_id.distinct()),
            func.sum(m.balance_change),
        )
        .select_from(
            invoice_movements.join(invoices, invoices.c.id == m.invoice_id).join(
                customers, customers.c.id == i.customer_id
            )
        )
        .where(
            m.effective_date > start,
            m.effective_date <= end,
            _known_filter(known),
            *_filters(entity, currency, customer_ref, invoice_ref),
        )
        .group_by(i.entity_code, i.currency, m.kind)
        .order_by(i.entity_code, i.currency, m.kind)
    )
    return [Change(e, cur, k, int(n), int(ni), Decimal(s or 0)) for e, cur, k, n, ni, s in conn.execute(q)]


def invoice_history(conn: Connection, entity: str, invoice_ref: str) -> list[dict[str, Any]]:
    """Every movement of one invoice, in order (effective date, then as recorded)."""
    m, i = invoice_movements.c, invoices.c
    rows = conn.execute(
        select(m.effective_date, m.recorded_at, m.kind, m.balance_change, m.status, m.ref)
        .select_from(invoice_movements.join(invoices, invoices.c.id == m.invoice_id))
        .where(i.entity_code == entity, i.invoice_ref == invoice_ref)
        .order_by(m.effective_date, m.id)
    ).all()
    return [
        {
            "effective_date": r.effective_date,
            "recorded_at": r.recorded_at,
            "kind": r.kind,
            "balance_change": r.balance_change,
            "status": r.status,
            "ref": r.ref,
        }
        for r in rows
    ]
