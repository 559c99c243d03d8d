"""GL tie-out of a merge: open AR per entity and currency before and after (:func:`_open_ar`), and the net change
posted as one AR sync journal entry per (entity, currency) (:func:`_post_ar_sync`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, case, func, select

from writeoffs import ledger
from writeoffs.accounting import entries as entry_rules
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.db import bulk, dialect
from writeoffs.db.schema import invoices, legal_entities
from writeoffs.journal import JournalEntry
from writeoffs.money import MINOR_UNITS, money_str, round_money, to_decimal


def _open_ar(conn: Connection, entities: list[str]) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """Open AR per (entity, currency): the document total and the functional total.

    The functional total is the sum of each invoice's open balance at its booked rate *rounded per invoice*
    (:func:`writeoffs.accounting.entries.functional`, half-up), because that is how every entry that moves one
    invoice books it: the AR sync delta is then exactly what the write-offs, recoveries and reversals of the same
    invoices move, and a fully written-off currency leaves no functional residue on AR control.
    """
    if not entities:
        return {}
    functional = dict(
        conn.execute(
            select(legal_entities.c.code, legal_entities.c.functional_currency).where(
                legal_entities.c.code.in_(entities)
            )
        ).all()
    )
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    if dialect.of(conn).native_decimal:
        # Exact NUMERIC arithmetic; ROUND(numeric, n) rounds half away from zero = ROUND_HALF_UP (tested against
        # entries.functional in tests/unit/test_posting_entries.py-style checks of the merge). n is the functional
        # currency's minor units, per entity (a CASE over the entities, their minor units bound as parameters).
        minor = case(
            *((invoices.c.entity_code == code, MINOR_UNITS.get(cur, 2)) for code, cur in sorted(functional.items())),
            else_=2,
        )
        q = (
            select(
                invoices.c.entity_code,
                invoices.c.currency,
                func.coalesce(func.sum(invoices.c.open_balance), 0),
                func.coalesce(func.sum(func.round(invoices.c.open_balance * invoices.c.fx_rate, minor)), 0),
            )
            .where(invoices.c.entity_code.in_(entities), invoices.c.open_balance != 0)
            .group_by(invoices.c.entity_code, invoices.c.currency)
        )
        for r in conn.execute(q).all():
            out[(r[0], r[1])] = (to_decimal(r[2]), to_decimal(r[3]))
        return out
    # SQLite has no exact decimal arithmetic: the typed columns come back as Decimal and are summed here.
    totals: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    q = select(invoices.c.entity_code, invoices.c.currency, invoices.c.open_balance, invoices.c.fx_rate).where(
        invoices.c.entity_code.in_(entities), invoices.c.open_balance != 0
    )
    for ent, cur, bal, rate in conn.execute(q):
        t = totals[(ent, cur)]
        bal = to_decimal(bal)
        t[0] += bal
        t[1] += entry_rules.functional(bal, rate, functional[ent])
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _post_ar_sync(
    conn: Connection,
    source: str,
    as_of: date,
    load_no: int,
    before: dict[tuple[str, str], tuple[Decimal, Decimal]],
    after: dict[tuple[str, str], tuple[Decimal, Decimal]],
    actor: str,
) -> tuple[list[dict[str, str]], list[str]]:
    bulk.require_origin(conn)  # the ledger's own triggers must see the AR sync entry
    entries: list[JournalEntry] = []
    notes: list[str] = []
    accts: dict[str, Any] = {}
    for entity, currency in sorted(set(before) | set(after)):
        b_txn, b_fun = before.get((entity, currency), (Decimal(0), Decimal(0)))
        a_txn, a_fun = after.get((entity, currency), (Decimal(0), Decimal(0)))
        if entity not in accts:
            accts[entity] = resolve_accounts(conn, entity)
        d_txn = round_money(a_txn - b_txn, currency)
        d_fun = round_money(a_fun - b_fun, accts[entity].functional_currency)
        if d_txn == 0 and d_fun == 0:
            continue
        if d_txn == 0 or (d_fun != 0 and (d_txn > 0) != (d_fun > 0)):
            # An fx-rate-only change moves functional AR without moving the invoice currency: it needs a
            # revaluation entry, which is not this feature's to post. Reported so reconciliation can explain it.
            notes.append(f"{entity} {currency}: functional AR moved {d_fun} without a matching {currency} change")
            continue
        entries.append(
            entry_rules.ar_sync(
                accts[entity],
                source=source,
                as_of=as_of,
                load_no=load_no,
                currency=currency,
                change=d_txn,
                functional_change=d_fun,
            )
        )
    result = ledger.post_entries(conn, entries, created_by=actor)
    ar = {entity: a.role("ar_control") for entity, a in accts.items()}
    posted = [
        {
            "key": e.key,
            "entity": e.entity,
            "currency": e.lines[0].currency,
            "net_change": money_str(
                sum((ln.debit - ln.credit for ln in e.lines if ln.account == ar[e.entity]), Decimal(0))
            ),
            "entry_id": str(result.posted.get(e.key) or result.already.get(e.key)),
        }
        for e in entries
    ]
    return posted, notes
