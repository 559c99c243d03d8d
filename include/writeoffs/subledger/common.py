"""What the sub-ledger's questions share: the levels, the two dates ("as of", "as known at"), the filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, func, literal, select

from writeoffs.db.schema import customers, invoice_movements, invoices

Level = Literal["invoice", "customer", "entity", "currency"]
#: "As known at": None (everything recorded), a date (by the end of that day, UTC), a moment, or a recorded_at value.
Known = date | datetime | str | None
LEVELS: tuple[str, ...] = ("invoice", "customer", "entity", "currency")


def recorded_text(moment: datetime) -> str:
    """A moment in ``recorded_at``'s text form, UTC (it compares as text, in time order); naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _known_filter(known: Known) -> Any:
    """``recorded_at`` condition for "as known at" (see :func:`known_param`)."""
    return literal(True) if known is None else invoice_movements.c.recorded_at <= known_param(known)


def last_recorded(conn: Connection) -> str | None:
    """The newest ``recorded_at`` (a "known at" moment that includes everything recorded so far)."""
    return conn.execute(select(func.max(invoice_movements.c.recorded_at))).scalar()


#: A ``:known`` bound that every ``recorded_at`` is below (text comparison).
EVERYTHING = "9999"


def known_param(known: Known) -> str:
    """The ``:known`` bound of :func:`aged_invoices_sql` for an "as known at" value (inclusive)."""
    if known is None:
        return EVERYTHING
    if isinstance(known, str):
        return known
    if isinstance(known, datetime):
        return recorded_text(known)
    # The end of that day: everything recorded before the next midnight (UTC).
    return recorded_text(datetime.combine(known + timedelta(days=1), time()) - timedelta(microseconds=1))


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
