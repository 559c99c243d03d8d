"""Open balances at the end of a date, per invoice, customer, entity or currency (:func:`balances_as_of`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, func, literal, or_, select, text

from writeoffs.db import bulk, dialect
from writeoffs.db.schema import ID, MONEY, customers, invoice_movements, invoices
from writeoffs.errors import WriteoffError
from writeoffs.subledger.aging import aged_params
from writeoffs.subledger.checkpoint import checkpoint_balances_sql, choose_checkpoint
from writeoffs.subledger.common import LEVELS, Known, Level, _filters, known_param


@dataclass(frozen=True, slots=True)
class Balance:
    entity: str  # '' at currency level
    currency: str
    key: str  # invoice ref, customer ref, entity code or currency, per level
    balance: Decimal
    invoices: int  # invoices with an open balance


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
    use_checkpoints: bool = True,
    limit: int | None = None,
) -> list[Balance]:
    """Open balances at the end of ``as_of`` per invoice, customer, entity (and currency) or currency: one query.

    Every invoice raised on or before the date counts (zero balances included, so a customer who had paid shows
    0). ``known``: only what the ledger had recorded by then (a date: by the end of that day, UTC); an invoice it
    did not know yet shows 0. ``use_checkpoints=False``: from the movements alone (the same answer, for checking).
    ``limit``: the first rows only, in the same order (a page cannot show a million invoices; the CLI has them all).
    """
    if level not in LEVELS:
        raise WriteoffError(f"balance level must be one of {', '.join(LEVELS)}, not {level!r}")
    m, i, c = invoice_movements.c, invoices.c, customers.c
    key = {"invoice": i.invoice_ref, "customer": c.customer_ref, "entity": i.entity_code, "currency": i.currency}[level]
    ent = literal("") if level == "currency" else i.entity_code
    cp = choose_checkpoint(conn, as_of, known) if use_checkpoints else None
    if cp is not None:  # from the nearest checkpoint (see writeoffs.subledger.checkpoint)
        sql = checkpoint_balances_sql(dialect.of(conn), known=known is not None)
        params = {k: v for k, v in aged_params(as_of, known, cp).items() if k != "ahw"}  # reads no copied attribute
        moved = text(sql).bindparams(**params).columns(invoice_id=ID, balance=MONEY).subquery()
        balance = func.coalesce(moved.c.balance, 0)
        source = invoices.outerjoin(moved, moved.c.invoice_id == i.id)
    else:  # current balance minus what came later (see later_movements_sql for why, and the invariant it relies on)
        later_when = m.effective_date > as_of
        if known is not None:
            later_when = or_(later_when, m.recorded_at > known_param(known))
        later = (
            select(m.invoice_id, func.sum(m.balance_change).label("later")).where(later_when).group_by(m.invoice_id)
        ).subquery()
        balance = i.open_balance - func.coalesce(later.c.later, 0)
        source = invoices.outerjoin(later, later.c.invoice_id == i.id)
    bulk.set_local_work_mem(conn)  # the per-invoice sums of a month's movements: hashed in memory, not spilled
    q = (
        select(ent.label("entity"), i.currency, key.label("key"), func.sum(balance), func.count().filter(balance > 0))
        .select_from(source.join(customers, customers.c.id == i.customer_id))
        .where(i.invoice_date <= as_of, *_filters(entity, currency, customer_ref, invoice_ref))
        .group_by(ent, i.currency, key)
        .order_by(ent, i.currency, key)
    )
    if limit is not None:
        q = q.limit(limit)
    return [
        Balance(e, cur, k, Decimal(0) if bal is None else bal, int(n or 0)) for e, cur, k, bal, n in conn.execute(q)
    ]


# --- aging ------------------------------------------------------------------------------------------------------------
