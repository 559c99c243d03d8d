"""Recoveries: ``recoveries`` (within what was written off, ``recovered_amount`` consistent) and ``recovery_cash``
(cash received on written-off amounts = cash booked)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, case, exists, func, literal, or_, select, union_all

from writeoffs.accounting.chart import posted_lines_join
from writeoffs.db.schema import MONEY, accounts, invoices, payment_allocations, recoveries
from writeoffs.money import money_str
from writeoffs.reconcile.model import (
    _JE,
    _JL,
    _ONE,
    _ZERO,
    Break,
    Tolerances,
    _dec,
    _group,
    _listed_break,
    _round4,
    _sum,
    _tol,
)


def check_recoveries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Per invoice: recoveries never exceed the amount written off; ``recovered_amount`` = sum of recoveries rows;
    recoveries are in the invoice currency and have a posted journal entry."""
    rows = _recovery_findings(conn, tolerance)
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r.exceeds:
            groups[(r.entity_code, r.currency, "exceeds")].append(r)
        if r.mismatch:
            groups[(r.entity_code, r.currency, "mismatch")].append(r)
        if r.unposted:
            groups[(r.entity_code, r.currency, "unposted")].append(r)
        if r.wrong_currency:
            groups[(r.entity_code, r.currency, "currency")].append(r)
    return [_recovery_break(conn, key, items) for key, items in groups.items()]


def _recovery_findings(conn: Connection, tolerance: Tolerances) -> list[Any]:
    """The invoices whose recoveries break a rule, with a flag per rule (one SQL statement)."""
    tol, tol_amount = _tol(conn, tolerance)
    c = _recovery_rows()
    exceeds = _round4(c.c.recovered - c.c.written_off_amount) > tol_amount
    mismatch = func.abs(_round4(c.c.recovered - c.c.recovered_amount)) > tol_amount
    return conn.execute(
        select(
            c,
            case((exceeds, _ONE), else_=_ZERO).label("exceeds"),
            case((mismatch, _ONE), else_=_ZERO).label("mismatch"),
        )
        .select_from(c.outerjoin(tol, tol.c.currency == c.c.currency))
        .where(or_(exceeds, mismatch, c.c.unposted > _ZERO, c.c.wrong_currency > _ZERO))
        .order_by(c.c.entity_code, c.c.currency, c.c.id)
    ).all()


def _recovery_rows() -> Any:
    """CTE ``c``: per invoice with recoveries (or a ``recovered_amount`` without any), its written-off and recovered
    amounts, the sum and count of its recoveries and how many are unposted or in another currency."""
    rc, i, e = recoveries.alias("rc"), invoices.alias("i"), _JE.alias("e")
    r = (
        select(
            rc.c.invoice_id,
            func.sum(rc.c.amount).label("amount"),
            func.count().label("n"),
            func.sum(case((or_(e.c.id.is_(None), e.c.status != "posted"), _ONE), else_=_ZERO)).label("unposted"),
            func.sum(case((rc.c.currency != i.c.currency, _ONE), else_=_ZERO)).label("wrong_currency"),
        )
        .select_from(rc.join(i, i.c.id == rc.c.invoice_id).outerjoin(e, e.c.id == rc.c.journal_entry_id))
        .group_by(rc.c.invoice_id)
        .cte("r")
    )
    ci, x = invoices.alias("i"), recoveries.alias("x")
    cols = (ci.c.id, ci.c.invoice_ref, ci.c.entity_code, ci.c.currency, ci.c.written_off_amount, ci.c.recovered_amount)
    return union_all(
        select(*cols, r.c.amount.label("recovered"), r.c.n, r.c.unposted, r.c.wrong_currency).select_from(
            r.join(ci, ci.c.id == r.c.invoice_id)
        ),
        select(*cols, _ZERO, _ZERO, _ZERO, _ZERO).where(
            ci.c.recovered_amount != _ZERO, ~select(_ONE).where(x.c.invoice_id == ci.c.id).exists()
        ),
    ).cte("c")


def _recovery_break(conn: Connection, key: tuple, items: list[Any]) -> Break:
    """One break for the invoices of one entity, currency and kind of finding."""
    entity, currency, k = key
    docs = [
        {
            "type": "invoice",
            "id": r.id,
            "ref": r.invoice_ref,
            "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
            "recovered_amount": money_str(_dec(conn, r.recovered_amount)),
            "recoveries_total": money_str(_dec(conn, r.recovered)),
            "recoveries": r.n,
        }
        for r in items
    ]
    recovered = _sum(conn, (r.recovered for r in items))
    if k == "exceeds":
        expected = _sum(conn, (r.written_off_amount for r in items))
        what = "recovered more than was written off"
    elif k == "mismatch":
        expected = _sum(conn, (r.recovered_amount for r in items))
        what = "have recovered_amount different from the sum of their recoveries"
    elif k == "unposted":
        expected = recovered
        what = f"have {sum(r.unposted for r in items)} recovery row(s) without a posted journal entry"
    else:
        expected = recovered
        what = "have recoveries in a currency other than the invoice's"
    return _listed_break(
        check="recoveries",
        entity=entity,
        currency=currency,
        expected=expected,
        actual=recovered,
        documents=docs,
        message=(
            f"{len(items)} invoice(s) of {entity} {what} (limit/recorded {money_str(expected)}, recoveries "
            f"{money_str(recovered)} {currency})"
        ),
    )


#: Journal sources that book cash received on written-off amounts (plus reversals of entries of these sources).
RECOVERY_CASH_SOURCES: tuple[str, ...] = ("recovery", "unapplied_cash")


def check_recovery_cash(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Cash received on written-off amounts = cash booked for it, per invoice (grouped per entity and currency).

    Received: 'recovery' payment allocations dated on or before ``as_of``, plus recoveries booked without such an
    allocation (by hand, or for a payment allocated otherwise). Booked: the cash-role account's debit - credit on
    posted entries of source ``recovery`` or ``unapplied_cash`` (and reversals of those), by the lines' invoice.
    The excess of a recovery allocation over what is still written off must be booked as unapplied cash, so an
    allocation booked only up to the cap shows up here. Regular payments are outside: the ERP books them (AR sync).
    """
    rows = conn.execute(_recovery_cash_query(as_of)).all()
    groups = _group(
        (r for r in rows if abs(_dec(conn, r.booked) - _dec(conn, r.received)) > tolerance.for_currency(r.currency)),
        lambda r: (r.entity_code, r.currency),
    )
    return [_recovery_cash_break(conn, key, items) for key, items in groups.items()]


def _recovery_cash_query(as_of: date):
    """Per invoice whose recovery cash received and booked differ: both amounts and the invoice's ref."""
    pa = payment_allocations.alias("pa")
    inv = invoices.alias("inv")
    rc = recoveries.alias("rc")
    pa2 = payment_allocations.alias("pa2")
    ln, e, o, a = _JL.alias("l"), _JE.alias("e"), _JE.alias("o"), accounts.alias("a")
    zero = literal(0, type_=MONEY)
    received_alloc = (
        select(inv.c.entity_code, inv.c.currency, pa.c.invoice_id, pa.c.amount.label("received"), zero.label("booked"))
        .select_from(pa.join(inv, inv.c.id == pa.c.invoice_id))
        .where(pa.c.kind == "recovery", pa.c.allocated_on <= as_of)
    )
    received_manual = (
        select(inv.c.entity_code, rc.c.currency, rc.c.invoice_id, rc.c.amount, zero)
        .select_from(rc.join(inv, inv.c.id == rc.c.invoice_id))
        .where(
            ~exists().where(
                pa2.c.kind == "recovery",
                pa2.c.invoice_id == rc.c.invoice_id,
                pa2.c.payment_id == rc.c.payment_id,
                pa2.c.allocated_on <= as_of,
            )
        )
    )
    sources = list(RECOVERY_CASH_SOURCES)
    booked = (
        select(ln.c.entity_code, ln.c.currency, ln.c.invoice_id, zero, (ln.c.debit - ln.c.credit))
        .select_from(posted_lines_join(ln, e, a, "cash").outerjoin(o, o.c.id == e.c.reverses_entry_id))
        .where(or_(e.c.source_type.in_(sources), and_(e.c.source_type == "reversal", o.c.source_type.in_(sources))))
    )
    u = union_all(received_alloc, received_manual, booked).subquery("u")
    per = (
        select(
            u.c.entity_code,
            u.c.currency,
            u.c.invoice_id,
            func.sum(u.c.received).label("received"),
            func.sum(u.c.booked).label("booked"),
        )
        .group_by(u.c.entity_code, u.c.currency, u.c.invoice_id)
        .having(func.round(func.sum(u.c.received) - func.sum(u.c.booked), 4) != 0)
        .subquery("per")
    )
    ref = invoices.alias("ref")
    return (
        select(per, ref.c.invoice_ref)
        .select_from(per.outerjoin(ref, ref.c.id == per.c.invoice_id))
        .order_by(per.c.entity_code, per.c.currency, per.c.invoice_id)
    )


def _recovery_cash_break(conn: Connection, key: tuple, items: list[Any]) -> Break:
    """One break for the invoices of one entity and currency whose recovery cash is not booked as received."""
    entity, currency = key
    expected, actual = _sum(conn, (r.received for r in items)), _sum(conn, (r.booked for r in items))
    docs = [
        {
            "type": "invoice",
            "id": r.invoice_id,
            "ref": r.invoice_ref,
            "received": money_str(_dec(conn, r.received)),
            "booked": money_str(_dec(conn, r.booked)),
        }
        for r in items
    ]
    return _listed_break(
        check="recovery_cash",
        entity=entity,
        currency=currency,
        expected=expected,
        actual=actual,
        documents=docs,
        message=(
            f"{len(items)} invoice(s) of {entity}: recovery cash received {money_str(expected)} {currency}, "
            f"booked to cash {money_str(actual)} (recoveries + unapplied cash)"
        ),
    )
