"""The KPI SQL, set-wise over the books: write-off events (write-offs minus reversals) and their detail for the
breakdowns and the tax listing, sales, open AR from the sub-ledger's movements, recoveries; and the readers that run
them and sum their rows as ``Decimal``.

Fixed statements live in ``kpi/sql/*.sql``; what code composes (the sums over the events, the detail with its aging
bucket, the breakdowns per dimension, open AR around the sub-ledger's later movements) is SQLAlchemy Core. Tables are
named with untyped columns (``table``/``column``): rows come back as the database stores them, read as money by
:mod:`writeoffs.db.money`, as the hand-written SQL did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    Executable,
    Subquery,
    TableClause,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    select,
    table,
    text,
)

from writeoffs.buckets import bucket_case
from writeoffs.db import dialect
from writeoffs.db.money import from_db_or_zero, rate_from_db
from writeoffs.db.sqlfiles import sql
from writeoffs.kpi.model import BreakdownRow
from writeoffs.money import round_money
from writeoffs.subledger import later_movements_sql

_Q4 = Decimal("0.0001")
_START, _END = bindparam("start", type_=Date), bindparam("end", type_=Date)


def _t(name: str, alias: str, *columns: str) -> Any:
    """``name AS alias`` with untyped columns (values come back as stored)."""
    tab: TableClause = table(name, *(column(c) for c in columns))
    return tab.alias(alias)


def _events() -> Subquery:
    """Write-off entries and reversals of write-off entries posted in [:start, :end] (``sql/events.sql``), as ``ev``."""
    cols = ("entity_code", "currency", "functional_currency", "sign", "amount", "functional_amount", "entry_id")
    cols += ("posting_date", "writeoff_entry_id", "invoice_id")
    stmt = sql(__package__, "events").bindparams(_START, _END)
    return stmt.columns(*(column(c) for c in cols)).subquery("ev")


def _detail(d: dialect.Dialect) -> Subquery:
    """The events with what the breakdowns and the tax listing need, as ``d``.

    The aging bucket at write-off is the snapshot's of the write-off's as-of date; a snapshot recomputed after
    posting no longer lists the written-off invoice (its balance is zero), so the bucket is then derived from the
    days past due on that date with the default buckets.
    """
    ev = _events()
    w = _t("writeoffs", "w", "id", "journal_entry_id", "reason_code", "batch_id", "as_of_date", "invoice_id")
    i = _t("invoices", "i", "id", "invoice_ref", "invoice_date", "source", "customer_id", "due_date")
    c = _t("customers", "c", "id", "customer_ref", "name", "segment")
    b = _t("writeoff_batches", "b", "id", "tier")
    a = _t("approvals", "a", "batch_id", "step", "decision", "approver")
    s = _t("aging_snapshots", "s", "as_of_date", "invoice_id", "bucket")
    bucket = bucket_case(d.days_apart(i.c.due_date, w.c.as_of_date))
    aging_bucket = func.coalesce(s.c.bucket, case((and_(w.c.id.is_not(None), i.c.id.is_not(None)), bucket)))
    approver = func.coalesce(a.c.approver, case((b.c.tier == "auto", literal("auto (small-balance tolerance)"))))
    joined = (
        ev.outerjoin(w, w.c.journal_entry_id == ev.c.writeoff_entry_id)
        .outerjoin(i, i.c.id == ev.c.invoice_id)
        .outerjoin(c, c.c.id == i.c.customer_id)
        .outerjoin(b, b.c.id == w.c.batch_id)
        .outerjoin(a, and_(a.c.batch_id == w.c.batch_id, a.c.step == "approve", a.c.decision == "approved"))
        .outerjoin(s, and_(s.c.as_of_date == w.c.as_of_date, s.c.invoice_id == w.c.invoice_id))
    )
    return (
        select(
            ev,
            w.c.id.label("writeoff_id"),
            w.c.reason_code,
            i.c.invoice_ref,
            i.c.invoice_date,
            i.c.source.label("source_system"),
            c.c.customer_ref,
            c.c.name.label("customer_name"),
            c.c.segment,
            aging_bucket.label("aging_bucket"),
            approver.label("approver"),
        )
        .select_from(joined)
        .subquery("d")
    )


#: Breakdown dimensions: name -> (column of :func:`_detail`, the label of its NULL).
DIMENSIONS: dict[str, tuple[str, str]] = {
    "segment": ("segment", "(unknown)"),
    "reason": ("reason_code", "(unknown)"),
    "approver": ("approver", "(none recorded)"),
    "source_system": ("source_system", "(unknown)"),
    "aging_bucket": ("aging_bucket", "(unknown)"),
}


def _dec(conn: Connection, value: object) -> Decimal:
    """A money value (or a signed sum of them) read by raw SQL as Decimal at 4 decimals; NULL is 0."""
    return from_db_or_zero(conn, value).quantize(_Q4)


def _rows(conn: Connection, stmt: Executable, start: date, end: date) -> Sequence[Any]:
    """Run ``stmt`` with ``:start`` / ``:end`` (bound as dates by the statement: SQLite stores ISO strings)."""
    return conn.execute(stmt, {"start": start, "end": end}).all()


def _writeoffs(conn: Connection, start: date, end: date) -> dict[tuple[str, str], dict[str, Any]]:
    ev = _events()
    pos, neg = ev.c.sign > 0, ev.c.sign < 0
    stmt = select(
        ev.c.entity_code,
        ev.c.currency,
        ev.c.functional_currency,
        func.sum(case((pos, ev.c.amount), else_=0)).label("gross"),
        func.sum(case((neg, ev.c.amount), else_=0)).label("reversed"),
        func.sum(case((pos, ev.c.functional_amount), else_=0)).label("functional_gross"),
        func.sum(case((neg, ev.c.functional_amount), else_=0)).label("functional_reversed"),
        func.sum(ev.c.sign * ev.c.functional_amount).label("functional_net"),
        func.sum(ev.c.sign).label("n"),
    ).group_by(ev.c.entity_code, ev.c.currency, ev.c.functional_currency)
    out = {}
    for r in _rows(conn, stmt, start, end):
        out[(r.entity_code, r.currency)] = {
            "gross": _dec(conn, r.gross),
            "reversed": _dec(conn, r.reversed),
            "functional_gross": _dec(conn, r.functional_gross),
            "functional_reversed": _dec(conn, r.functional_reversed),
            "functional_net": _dec(conn, r.functional_net),
            "n": int(r.n or 0),
        }
    return out


def _sums(conn: Connection, stmt: Executable, start: date, end: date) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """``entity_code, currency, fx_rate, amount`` rows -> {(entity, currency): (amount, functional)}.

    The functional total is sum(amount) x rate per booked rate, in Decimal: exact on both databases (SQLite must not
    multiply money by a rate in SQL).
    """
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for r in _rows(conn, stmt, start, end):
        amount = from_db_or_zero(conn, r[3])
        functional = amount * rate_from_db(conn, r[2])
        was, was_f = out.get((r[0], r[1]), (Decimal(0), Decimal(0)))
        out[(r[0], r[1])] = (was + amount, was_f + functional)
    return {k: (a.quantize(_Q4), f.quantize(_Q4)) for k, (a, f) in out.items()}


def _sales() -> Executable:
    """Sales of [:start, :end] per entity, currency and booked rate (``sql/sales.sql``)."""
    return sql(__package__, "sales").bindparams(_START, _END)


def _ar_movements() -> Executable:
    """Open AR at the end of the period from the sub-ledger's movements (writeoffs.subledger): exact for any past
    date, whether or not anyone aged it on the day. Open balances are never negative, so summing every invoice's
    movements (zero-balance invoices add nothing) equals summing the open ones."""
    later = text(later_movements_sql(day=":end")).bindparams(_END)
    x = later.columns(column("invoice_id"), column("later")).subquery("x")
    i = _t("invoices", "i", "id", "entity_code", "currency", "fx_rate", "open_balance", "invoice_date")
    return (
        select(i.c.entity_code, i.c.currency, i.c.fx_rate, func.sum(i.c.open_balance - func.coalesce(x.c.later, 0)))
        .select_from(i.outerjoin(x, x.c.invoice_id == i.c.id))
        .where(i.c.invoice_date <= _END)
        .group_by(i.c.entity_code, i.c.currency, i.c.fx_rate)
    )


def _recoveries() -> Executable:
    """Recoveries of [:start, :end] per entity, currency and the invoice's booked rate (``sql/recoveries.sql``)."""
    return sql(__package__, "recoveries").bindparams(_START, _END)


def _functional_currencies(conn: Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(text("SELECT code, functional_currency FROM legal_entities")).all()}


def _breakdown(d: Subquery, col: str, none_label: str) -> Executable:
    """Net written off per value of the dimension ``col`` of :func:`_detail` (NULL read as ``none_label``)."""
    # The label is rendered as a literal (literal_execute), so that SELECT and GROUP BY hold the same expression.
    expr = func.coalesce(d.c[col], literal(none_label, literal_execute=True))
    value = expr.label("value")
    return (
        select(
            value,
            d.c.currency,
            d.c.functional_currency,
            func.sum(d.c.sign).label("n"),
            func.sum(d.c.sign * d.c.amount).label("amount"),
            func.sum(d.c.sign * d.c.functional_amount).label("functional_amount"),
        )
        .group_by(expr, d.c.currency, d.c.functional_currency)
        .order_by(value, d.c.currency)
    )


def _breakdowns(conn: Connection, start: date, end: date) -> dict[str, tuple[BreakdownRow, ...]]:
    out = {}
    for name, (col, none_label) in DIMENSIONS.items():
        rows = _rows(conn, _breakdown(_detail(dialect.of(conn)), col, none_label), start, end)
        out[name] = tuple(
            BreakdownRow(
                r.value,
                r.currency,
                int(r.n or 0),
                _dec(conn, r.amount),
                r.functional_currency,
                _dec(conn, r.functional_amount),
            )
            for r in rows
        )
    return out


def _listing(conn: Connection, start: date, end: date) -> tuple[dict[str, Any], ...]:
    d = _detail(dialect.of(conn))
    stmt = select(d).order_by(d.c.posting_date, d.c.entity_code, d.c.invoice_ref, d.c.entry_id)
    rows = _rows(conn, stmt, start, end)
    return tuple(
        {
            "posting_date": r.posting_date
            if isinstance(r.posting_date, date)
            else date.fromisoformat(str(r.posting_date)),
            "entity": r.entity_code,
            "entry_type": "write-off" if r.sign > 0 else "reversal",
            "journal_entry_id": r.entry_id,
            "writeoff_id": r.writeoff_id,
            "invoice_ref": r.invoice_ref,
            "invoice_date": r.invoice_date,
            "customer_ref": r.customer_ref,
            "customer_name": r.customer_name,
            "segment": r.segment,
            "reason_code": r.reason_code,
            "approver": r.approver,
            "currency": r.currency,
            "amount": round_money(_dec(conn, r.amount) * r.sign, r.currency),
            "functional_currency": r.functional_currency,
            "functional_amount": round_money(_dec(conn, r.functional_amount) * r.sign, r.functional_currency),
        }
        for r in rows
    )


def _net_by_pair(conn: Connection, start: date, end: date) -> tuple[dict[tuple[str, str], Decimal], dict[str, Decimal]]:
    wo = _writeoffs(conn, start, end)
    per_pair = {k: v["gross"] - v["reversed"] for k, v in wo.items()}
    functional: dict[str, Decimal] = defaultdict(Decimal)
    for (entity, _), v in wo.items():
        functional[entity] += v["functional_net"]
    return per_pair, dict(functional)
