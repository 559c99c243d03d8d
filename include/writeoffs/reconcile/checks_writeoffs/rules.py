"""Posting kept its rules: ``paid_after_selection`` (no posted write-off of a paid invoice) and ``posting_rules``
(none under a hold, none of a child the parent paid). Checks in SQLAlchemy Core (money columns keep their column
types, whatever their storage)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, func, literal, or_, select, true, union_all

from writeoffs.db.schema import customers, holds, invoices, payment_allocations, payments, writeoffs
from writeoffs.money import money_str
from writeoffs.reconcile.model import _JE, Break, Tolerances, _dec, _group, _listed_break, _sum


def _active_posted_writeoffs():
    """``writeoffs`` rows in status 'posted' with their posted write-off entry, and their invoice."""
    w, e, i = writeoffs.alias("w"), _JE.alias("we"), invoices.alias("i")
    return (
        w,
        e,
        i,
        w.join(i, i.c.id == w.c.invoice_id).join(
            e, and_(e.c.id == w.c.journal_entry_id, e.c.status == "posted", e.c.source_type == "writeoff")
        ),
    )


def _wo_columns(w: Any, e: Any, i: Any) -> tuple[Any, ...]:
    """The columns of a posted write-off that its document (:func:`_wo_doc`) and its break's grouping read."""
    return (
        w.c.id.label("writeoff_id"),
        w.c.amount,
        w.c.as_of_date.label("selected_on"),
        e.c.posting_date.label("posted_on"),
        i.c.invoice_ref,
        i.c.entity_code,
        i.c.currency,
    )


def _wo_doc(conn: Connection, r: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "writeoff",
        "id": r.writeoff_id,
        "invoice_ref": r.invoice_ref,
        "amount": money_str(_dec(conn, r.amount)),
        "selected_on": str(r.selected_on),
        "posted_on": str(r.posted_on),
        **extra,
    }


def check_paid_after_selection(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off of an invoice that was paid: (1) a regular payment (allocation or payment date) after the
    write-off's selection date and on or before its posting date, which posting must have skipped; (2) an invoice
    whose regular cash plus ``written_off_amount`` exceeds its amount: the same money is both collected and written
    off (cash on a written-off amount is a recovery, never a regular payment). Dates are business dates, never
    timestamps. Expected 0; actual the write-off amount (1) or the excess over the invoice amount (2)."""
    groups = _group(conn.execute(_paid_late_query()).all(), lambda r: (r.entity_code, r.currency, "late"))
    for r in conn.execute(_paid_and_written_off_query()):
        excess = _dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount)
        if excess > tolerance.for_currency(r.currency):
            groups[(r.entity_code, r.currency, "over")].append(r)
    return [_paid_break(conn, key, items) for key, items in groups.items()]


def _paid_late_query():
    """(1) Posted write-offs with a regular payment after selection and on or before posting."""
    w, e, i, src = _active_posted_writeoffs()
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    return (
        select(*_wo_columns(w, e, i), func.min(pa.c.allocated_on).label("paid_on"))
        .select_from(
            src.join(pa, and_(pa.c.invoice_id == w.c.invoice_id, pa.c.kind == "regular")).join(
                p, p.c.id == pa.c.payment_id
            )
        )
        .where(
            or_(
                and_(pa.c.allocated_on > w.c.as_of_date, pa.c.allocated_on <= e.c.posting_date),
                and_(p.c.payment_date > w.c.as_of_date, p.c.payment_date <= e.c.posting_date),
            )
        )
        .group_by(w.c.id, w.c.amount, w.c.as_of_date, e.c.posting_date, i.c.invoice_ref, i.c.entity_code, i.c.currency)
        .order_by(i.c.entity_code, i.c.currency, w.c.id)
    )


def _paid_and_written_off_query():
    """(2) Written-off invoices whose regular cash plus the amount written off exceed the invoice amount."""
    # Only written-off invoices, then their regular allocations by the indexed invoice_id (never all payments).
    pa = payment_allocations.alias("pa")
    inv = invoices.alias("inv")
    cash = func.sum(pa.c.amount)
    return (
        select(
            inv.c.id,
            inv.c.invoice_ref,
            inv.c.entity_code,
            inv.c.currency,
            inv.c.amount,
            inv.c.written_off_amount,
            cash.label("cash"),
        )
        .select_from(inv.join(pa, and_(pa.c.invoice_id == inv.c.id, pa.c.kind == "regular")))
        .where(inv.c.written_off_amount > 0)
        .group_by(
            inv.c.id, inv.c.invoice_ref, inv.c.entity_code, inv.c.currency, inv.c.amount, inv.c.written_off_amount
        )
        .having(func.round(cash + inv.c.written_off_amount - inv.c.amount, 4) > 0)
        .order_by(inv.c.entity_code, inv.c.currency, inv.c.id)
    )


def _paid_break(conn: Connection, key: tuple, items: list[Any]) -> Break:
    """One break for the paid write-offs (``late``) or invoices (``over``) of one entity and currency."""
    entity, currency, kind = key
    if kind == "late":
        actual = _sum(conn, (r.amount for r in items))
        docs = [_wo_doc(conn, r, paid_on=str(r.paid_on)) for r in items]
        what = "posted although a payment arrived after selection and before posting"
    else:
        actual = _sum(
            conn, (_dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount) for r in items)
        )
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "amount": money_str(_dec(conn, r.amount)),
                "regular_cash": money_str(_dec(conn, r.cash)),
                "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
            }
            for r in items
        ]
        what = "paid and written off: regular cash plus the amount written off exceed the invoice"
    return _listed_break(
        check="paid_after_selection",
        entity=entity,
        currency=currency,
        expected=_dec(conn, 0),
        actual=actual,
        documents=docs,
        message=(
            f"{len(items)} write-off(s)/invoice(s) of {entity} {what}: {money_str(actual)} {currency} "
            "written off that was paid"
        ),
    )


#: What each kind of ``posting_rules`` finding says about its write-offs.
_RULE_FINDINGS = {
    "hold": "posted while a dispute/payment-plan hold was active on the invoice or customer",
    "parent": "of child invoices whose transferred balance the parent had paid in part",
}


def check_posting_rules(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off broke a rule posting re-checks: (1) a dispute/payment-plan hold on the invoice or the
    customer active on the posting date (started on or before it, not ended before it); (2) a child invoice whose
    balance went to the parent, with a regular payment by the parent on or before the posting date (such a
    child invoice cannot be written off). Expected 0; actual the amount written off."""
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for r in conn.execute(_rule_breaches_query()):
        groups[(r.entity_code, r.currency, r.kind)].append(r)
    out = []
    for (entity, currency, kind), items in groups.items():
        actual = _sum(conn, (r.amount for r in items))
        docs = [
            _wo_doc(conn, r, hold_since=str(r.since))
            if kind == "hold"
            else _wo_doc(conn, r, parent_paid_on=str(r.since))
            for r in items
        ]
        out.append(
            _listed_break(
                check="posting_rules",
                entity=entity,
                currency=currency,
                expected=_dec(conn, 0),
                actual=actual,
                documents=docs,
                message=f"{len(items)} write-off(s) of {entity} {_RULE_FINDINGS[kind]}: {money_str(actual)} {currency}",
            )
        )
    return out


def _rule_breaches_query():
    """The posted write-offs under an active hold (``hold``) or of a child the parent paid (``parent``), one row
    per write-off and kind with the earliest date that makes it a breach (``since``)."""
    w, e, i, src = _active_posted_writeoffs()
    h = holds.alias("h")
    cols = _wo_columns(w, e, i)
    active_hold = and_(
        h.c.start_date <= e.c.posting_date, or_(h.c.end_date.is_(None), h.c.end_date >= e.c.posting_date)
    )
    # Invoice holds and account holds as two joins on indexed keys (an OR in one join condition would scan holds).
    on_hold = union_all(
        select(*cols, h.c.start_date.label("since")).select_from(
            src.join(h, and_(h.c.invoice_id == w.c.invoice_id, active_hold))
        ),
        select(*cols, h.c.start_date).select_from(
            src.join(h, and_(h.c.customer_id == i.c.customer_id, h.c.invoice_id.is_(None), active_hold))
        ),
    ).subquery("on_hold")
    cust = customers.alias("cust")
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    parent_paid = (
        select(*cols, pa.c.allocated_on.label("since"))
        .select_from(
            src.join(cust, cust.c.id == i.c.customer_id)
            .join(
                pa,
                and_(
                    pa.c.invoice_id == w.c.invoice_id,
                    pa.c.kind == "regular",
                    pa.c.allocated_on <= e.c.posting_date,
                ),
            )
            .join(p, and_(p.c.id == pa.c.payment_id, p.c.customer_id == cust.c.parent_id))
        )
        .where(i.c.balance_transferred_to_parent == true())
        .subquery("parent_paid")
    )

    def grouped(sq: Any, kind: str) -> Any:
        keys_ = [sq.c[c.name] for c in cols]
        return select(*keys_, func.min(sq.c.since).label("since"), literal(kind).label("kind")).group_by(*keys_)

    q = union_all(grouped(on_hold, "hold"), grouped(parent_paid, "parent")).subquery("q")
    return select(q).order_by(q.c.entity_code, q.c.currency, q.c.kind, q.c.writeoff_id)
