"""Allowance method: the allowance account's credit balance (:func:`allowance_balance`), and the rule that a chunk
never takes it into a debit balance (:func:`_cover_allowance`: refuse, or fund the shortfall first, as the batch
policy's ``allowance_shortfall`` says).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, func, select

from writeoffs import audit, ledger
from writeoffs.accounting import entries, keys
from writeoffs.accounting.chart import Accounts, Role
from writeoffs.db.schema import journal_entries, journal_lines
from writeoffs.errors import LedgerError
from writeoffs.money import money_str, round_money
from writeoffs.posting.model import _Context


def allowance_balance(conn: Connection, accts: Accounts, currency: str) -> tuple[Decimal, Decimal]:
    """Credit balance (credit - debit) of the entity's allowance account in ``currency``: (transaction, functional)."""
    jl, je = journal_lines, journal_entries
    row = conn.execute(
        select(
            func.coalesce(func.sum(jl.c.credit - jl.c.debit), 0),
            func.coalesce(func.sum(jl.c.functional_credit - jl.c.functional_debit), 0),
        )
        .select_from(jl.join(je, je.c.id == jl.c.entry_id))
        .where(
            je.c.status == "posted",
            jl.c.entity_code == accts.entity,
            jl.c.account_code == accts.role(Role.ALLOWANCE),
            jl.c.currency == currency,
        )
    ).one()
    return (
        round_money(Decimal(str(row[0])), currency),
        round_money(Decimal(str(row[1])), accts.functional_currency),
    )


def _cover_allowance(conn: Connection, ctx: _Context, rows) -> None:
    """An allowance-method chunk never takes the allowance into a debit balance: refuse, or fund the shortfall.

    Which of the two is the batch policy's ``allowance_shortfall``. Funding posts ``Dr Bad Debt Expense / Cr
    Allowance`` for exactly the shortfall, in the chunk's transaction, before the write-offs.
    """
    currency = rows[0].currency
    fc = ctx.functional_currency
    need = sum((round_money(r.amount, currency) for r in rows), Decimal(0))
    need_f = sum((entries.functional(round_money(r.amount, currency), r.fx_rate, fc) for r in rows), Decimal(0))
    have, have_f = allowance_balance(conn, ctx.accts, currency)
    if need <= have:
        return
    short, short_f = need - have, max(need_f - have_f, Decimal(0))
    if ctx.allowance_shortfall != "fund":
        raise LedgerError(
            f"batch {ctx.batch_id}: the allowance of {ctx.entity} holds {money_str(have)} {currency}, these write-offs "
            f"need {money_str(need)}; posting refused (estimate the allowance first, or set allowance_shortfall: fund "
            "in the policy)"
        )
    entry = entries.allowance_adjustment(
        ctx.accts,
        key=keys.allowance_funding(ctx.batch_id, rows[0].id),
        posting_date=ctx.posting_date,
        currency=currency,
        change=short,
        functional_change=short_f,
        description=(
            f"Allowance funded before write-offs of batch {ctx.batch_key}: held {money_str(have)}, needed "
            f"{money_str(need)} {currency}"
        ),
        memo=f"allowance funding batch {ctx.batch_id}",
        source_type="allowance",
        source_id=f"batch:{ctx.batch_id}",
    )
    ledger.post_entries(conn, [entry], created_by=ctx.actor, batch_id=ctx.batch_id)
    audit.append(
        conn,
        actor=ctx.actor,
        action="allowance.funded",
        object_type="writeoff_batch",
        object_id=ctx.batch_id,
        details={"currency": currency, "held": have, "needed": need, "funded": short, "entry_key": entry.key},
    )
