"""What changed between two dates, per entity, currency and kind; one invoice's movements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select

from writeoffs.db.schema import customers, invoice_movements, invoices
from writeoffs.errors import WriteoffError
from writeoffs.subledger.common import Known, Level, _filters, _known_filter


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
    return [
        Change(e, cur, k, int(n), int(ni), Decimal(0) if s is None else s) for e, cur, k, n, ni, s in conn.execute(q)
    ]


def changes_level(customer_ref: str | None, invoice_ref: str | None) -> Level:
    """The level of the balances shown at both ends of "what changed": the narrowest the filters name (an invoice,
    a customer), else per entity; so the two lists stay short whatever the ledger's size."""
    return "invoice" if invoice_ref else "customer" if customer_ref else "entity"


def invoice_history(
    conn: Connection,
    entity: str,
    invoice_ref: str,
    *,
    after: date | None = None,
    through: date | None = None,
    known: Known = None,
) -> list[dict[str, Any]]:
    """Every movement of one invoice, in order (effective date, then as recorded), with the invoice's currency.

    ``after``/``through``: only those effective after the one day up to and including the other (the dates of
    :func:`changes_between`); ``known``: only those recorded by then (as in :func:`balances_as_of`).
    """
    m, i = invoice_movements.c, invoices.c
    when = [_known_filter(known)]
    if after is not None:
        when.append(m.effective_date > after)
    if through is not None:
        when.append(m.effective_date <= through)
    rows = conn.execute(
        select(m.effective_date, m.recorded_at, m.kind, m.balance_change, m.status, m.ref, i.currency)
        .select_from(invoice_movements.join(invoices, invoices.c.id == m.invoice_id))
        .where(i.entity_code == entity, i.invoice_ref == invoice_ref, *when)
        .order_by(m.effective_date, m.id)
    ).all()
    return [
        {
            "effective_date": r.effective_date,
            "recorded_at": r.recorded_at,
            "kind": r.kind,
            "balance_change": r.balance_change,
            "currency": r.currency,
            "status": r.status,
            "ref": r.ref,
        }
        for r in rows
    ]
