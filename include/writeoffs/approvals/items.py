"""The batch's items as approvals see them, and the batch hash over them (:func:`batch_hash_of`)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Connection, func, literal, select

from writeoffs.db.schema import customers, invoices, writeoffs
from writeoffs.tiers import Item

_SCALE = Decimal("0.0001")


def _amount_text(amount: object) -> str:
    return format(Decimal(str(amount)).quantize(_SCALE), "f")


def batch_hash_of(items: Iterable[tuple[str, object, str]]) -> str:
    """The batch hash over ``(invoice_ref, amount, reason_code)`` items (order-independent).

    One definition for the whole pipeline: the policy computes it when proposing a batch (set-wise on PostgreSQL),
    approval and posting recompute it here; a second formula would refuse every approval.
    """
    from writeoffs.policy.batching import items_digest

    return items_digest(
        (ref, amount if type(amount) is Decimal else Decimal(str(amount)), reason) for ref, amount, reason in items
    )


def current_item_rows(conn: Connection, batch_id: int, *, segments: bool = True):
    """The batch's items that are not excluded: id, invoice_id, invoice_ref, amount, reason_code, status, segment.
    ``segments=False`` leaves the customer segment empty (no join) when no limit looks at it."""
    joined = writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id)
    if segments:
        joined = joined.join(customers, customers.c.id == invoices.c.customer_id)
    segment = customers.c.segment if segments else literal("").label("segment")
    return conn.execute(
        select(
            writeoffs.c.id,
            writeoffs.c.invoice_id,
            invoices.c.invoice_ref,
            writeoffs.c.amount,
            writeoffs.c.reason_code,
            writeoffs.c.status,
            segment,
        )
        .select_from(joined)
        .where(writeoffs.c.batch_id == batch_id, writeoffs.c.status != "excluded")
    ).all()


def limit_items(rows) -> list[Item]:
    """What the limit rules look at, from :func:`current_item_rows` rows: (amount, reason, segment) per item."""
    return [(r.amount, r.reason_code, r.segment) for r in rows]


def current_items(conn: Connection, batch_id: int) -> list[tuple[str, Decimal, str]]:
    """The batch's items that are not excluded, as (invoice_ref, amount, reason_code)."""
    return [(r.invoice_ref, r.amount, r.reason_code) for r in current_item_rows(conn, batch_id)]


def current_total(conn: Connection, batch_id: int) -> Decimal | None:
    """:func:`_total` of :func:`current_items`, summed by the database (a 100,000-item batch is not read for it)."""
    w = writeoffs.c
    n, total = conn.execute(
        select(func.count(), func.sum(w.amount)).where(w.batch_id == batch_id, w.status != "excluded")
    ).one()
    return total if n else None


def _total(items) -> Decimal | None:
    """The sum of a batch's (ref, amount, reason) items; None when there are none."""
    return sum((a for _, a, _ in items), Decimal(0)) if items else None
