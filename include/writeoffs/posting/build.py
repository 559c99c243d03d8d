"""The chunk's journal entries, two ways to the same rows: ``JournalEntry`` objects from the accounting core
(:func:`_entries`, SQLite) or SELECTs over writeoffs, invoices and currencies that the database inserts set-wise
(:func:`_journal_sources`, PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    Select,
    String,
    any_,
    case,
    cast,
    column,
    func,
    literal,
    null,
    select,
    values,
)

from writeoffs import ledger
from writeoffs.accounting import entries
from writeoffs.accounting.chart import Role
from writeoffs.db import dialect
from writeoffs.db.schema import currencies, invoices, writeoffs
from writeoffs.journal import JournalEntry
from writeoffs.posting.model import _Context


def _entries(rows, ctx: _Context) -> list[JournalEntry]:
    return [
        entries.writeoff(
            ctx.accts,
            writeoff_key=r.idempotency_key,
            writeoff_id=r.id,
            posting_date=ctx.posting_date,
            invoice_id=r.invoice_id,
            invoice_ref=r.invoice_ref,
            currency=r.currency,
            amount=r.amount,
            fx_rate=r.fx_rate,
            reason_code=r.reason_code,
            policy_version=r.policy_version,
            batch_key=ctx.batch_key,
            approval_ref=ctx.approval_ref,
        )
        for r in rows
    ]


def _journal_sources(ctx: _Context, writeoff_ids: Sequence[int]) -> tuple[Select, Select]:
    """The chunk's entries and lines as SELECTs over writeoffs/invoices (PostgreSQL's set-wise posting path).

    Column for column what :func:`writeoffs.accounting.entries.writeoff` produces, computed by the database: the rows
    never travel through Python, which at 50,000 write-offs costs more than writing them. Amounts are rounded like
    ``money.round_money``: ``ROUND(numeric, minor_unit)`` rounds half away from zero, which is half-up for the
    positive amounts of a write-off (``amount > 0`` is a CHECK on writeoffs); minor units come from ``currencies``,
    seeded from ``money.MINOR_UNITS``; the functional amount is rounded once, from the rounded transaction amount.
    Not for SQLite, whose ROUND works in binary floating point. tests/integration/test_posting_setwise.py proves
    the rows equal the Python path's.
    """
    w, i = writeoffs, invoices
    cur, fcur = currencies.alias("cur"), currencies.alias("fcur")
    side = values(column("line_no", Integer), name="side").data([(1,), (2,)])
    amount = func.round(w.c.amount, cur.c.minor_unit)
    functional = func.round(amount * i.c.fx_rate, fcur.c.minor_unit)
    if ctx.method == "allowance":
        debit_account = literal(ctx.accts.role(Role.ALLOWANCE), String)
    else:
        # _context refused any reason of the batch that the policy does not map; NULL would fail NOT NULL anyway.
        debit_account = case(dict(ctx.accts.reasons), value=w.c.reason_code, else_=null())
    source = (
        w.join(i, i.c.id == w.c.invoice_id)
        .join(cur, cur.c.code == w.c.currency)
        .join(fcur, fcur.c.code == literal(ctx.functional_currency))
    )
    in_chunk = w.c.id == any_(literal(list(writeoff_ids), dialect.ARRAY(BigInteger)))
    key = w.c.idempotency_key.label("idempotency_key")  # keys.writeoff_entry: already wo:-prefixed (_context)
    description = (
        literal("Write-off ")
        + i.c.invoice_ref
        + literal(" (")
        + w.c.reason_code
        + literal(f", {ctx.method} method); batch {ctx.batch_key}; {ctx.approval_ref}; policy ")
        + w.c.policy_version
    )
    entries = (
        select(
            key,
            literal(ctx.entity).label("entity_code"),
            literal(ctx.posting_date, Date).label("posting_date"),
            literal(ledger.period_of(ctx.posting_date)).label("period"),
            func.left(description, 400).label("description"),
            literal("writeoff").label("source_type"),
            cast(w.c.id, String).label("source_id"),
            cast(null(), BigInteger).label("reverses_entry_id"),
            w.c.policy_version.label("policy_version"),
        )
        .select_from(source)
        .where(in_chunk)
        .order_by(w.c.id)
    )
    debit_side = side.c.line_no == 1
    lines = (
        select(
            key,
            side.c.line_no,
            literal(ctx.entity).label("entity_code"),
            case((debit_side, debit_account), else_=literal(ctx.ar_account)).label("account_code"),
            w.c.currency.label("currency"),
            case((debit_side, amount), else_=0).label("debit"),
            case((debit_side, 0), else_=amount).label("credit"),
            literal(ctx.functional_currency).label("functional_currency"),
            case((debit_side, functional), else_=0).label("functional_debit"),
            case((debit_side, 0), else_=functional).label("functional_credit"),
            w.c.invoice_id.label("invoice_id"),
            func.left(literal("write-off ") + i.c.invoice_ref + literal(" ") + w.c.reason_code, 200).label("memo"),
        )
        .select_from(source.join(side, literal(True)))
        .where(in_chunk)
        .order_by(w.c.id, side.c.line_no)
    )
    return entries, lines
