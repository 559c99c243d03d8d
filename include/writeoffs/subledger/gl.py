"""The sub-ledger against the GL's AR control account at a date (:func:`compare_with_gl`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, text

from writeoffs.accounting.chart import posted_lines_joins
from writeoffs.db import bulk, dialect
from writeoffs.db.money import from_db
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
    params = aged_params(as_of, known)
    day = dialect.of(conn).date(":d")
    later = later_movements_sql(known=known is not None, day=day)
    bulk.set_local_work_mem(conn)
    rows = conn.execute(
        text(
            f"""
            WITH sub AS (
                SELECT i.entity_code, i.currency, SUM(i.open_balance - COALESCE(x.later, 0)) AS amount
                FROM invoices i LEFT JOIN ({later}) x ON x.invoice_id = i.id
                WHERE i.invoice_date <= {day}
                GROUP BY i.entity_code, i.currency),
            gl AS (
                SELECT l.entity_code, l.currency, SUM(l.debit - l.credit) AS amount
                FROM journal_lines l
                {posted_lines_joins("ar_control", through=day)}
                GROUP BY l.entity_code, l.currency),
            k AS (SELECT entity_code, currency FROM sub UNION SELECT entity_code, currency FROM gl)
            SELECT k.entity_code, k.currency, sub.amount, gl.amount
            FROM k
            LEFT JOIN sub ON sub.entity_code = k.entity_code AND sub.currency = k.currency
            LEFT JOIN gl ON gl.entity_code = k.entity_code AND gl.currency = k.currency
            ORDER BY k.entity_code, k.currency
            """
        ),
        params,
    ).all()
    out = []
    for entity, currency, sub, gl in rows:
        s = from_db(conn, sub) or Decimal(0)
        g = from_db(conn, gl) or Decimal(0)
        out.append(GlComparison(entity, currency, s, g, g - s))
    return out
