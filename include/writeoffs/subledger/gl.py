"""The sub-ledger against the GL's AR control account at a date (:func:`compare_with_gl`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Date, and_, bindparam, column, func, select, text, union

from writeoffs.accounting.chart import posted_lines
from writeoffs.db import bulk, dialect
from writeoffs.db.money import from_db
from writeoffs.db.schema import invoices
from writeoffs.subledger.aging import aged_params, later_movements_sql
from writeoffs.subledger.common import Known


@dataclass(frozen=True, slots=True)
class GlComparison:
    entity: str
    currency: str
    subledger: Decimal  # open AR as of the date, from movements
    gl: Decimal  # AR control: posted lines dated on or before the date
    difference: Decimal  # gl - subledger


def compare_with_gl(conn: Connection, as_of: date, *, known: Known = None) -> list[GlComparison]:
    """Sub-ledger open AR vs the GL's AR control account at the end of ``as_of``, per entity and currency: one query.

    A difference is a cut-off (or worse): e.g. an invoice raised before the date that first arrived in a later
    extract is in the sub-ledger as of its invoice date, while the AR sync entry that booked it is dated the day of
    that extract.
    """
    params = aged_params(as_of, known) | {"d": as_of}
    day = bindparam("d", type_=Date)
    later = text(later_movements_sql(known=known is not None, day=dialect.of(conn).date(":d")))
    x = later.bindparams(day).columns(column("invoice_id"), column("later")).subquery("x")
    i = invoices.alias("i")
    sub = (
        select(i.c.entity_code, i.c.currency, func.sum(i.c.open_balance - func.coalesce(x.c.later, 0)).label("amount"))
        .select_from(i.outerjoin(x, x.c.invoice_id == i.c.id))
        .where(i.c.invoice_date <= day)
        .group_by(i.c.entity_code, i.c.currency)
        .cte("sub")
    )
    p = posted_lines("ar_control", through=day)
    gl = (
        select(p.l.c.entity_code, p.l.c.currency, func.sum(p.l.c.debit - p.l.c.credit).label("amount"))
        .select_from(p.join)
        .group_by(p.l.c.entity_code, p.l.c.currency)
        .cte("gl")
    )
    k = union(select(sub.c.entity_code, sub.c.currency), select(gl.c.entity_code, gl.c.currency)).cte("k")
    query = (
        select(k.c.entity_code, k.c.currency, sub.c.amount, gl.c.amount)
        .select_from(
            k.outerjoin(sub, and_(sub.c.entity_code == k.c.entity_code, sub.c.currency == k.c.currency)).outerjoin(
                gl, and_(gl.c.entity_code == k.c.entity_code, gl.c.currency == k.c.currency)
            )
        )
        .order_by(k.c.entity_code, k.c.currency)
    )
    bulk.set_local_work_mem(conn)
    rows = conn.execute(query, params).all()
    out = []
    for entity, currency, sub, gl in rows:
        s = from_db(conn, sub) or Decimal(0)
        g = from_db(conn, gl) or Decimal(0)
        out.append(GlComparison(entity, currency, s, g, g - s))
    return out
