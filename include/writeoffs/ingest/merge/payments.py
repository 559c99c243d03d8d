"""Payments of a staged batch and their allocations, split into 'regular' cash and 'recovery' cash on what was
written off (:func:`_merge_allocations`).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from sqlalchemy import Connection, column, func, select

from writeoffs.db import dialect
from writeoffs.ingest.merge.common import _sql, log, statement


def _merge_payments(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    pays = _sql(conn, "payments_insert", p)
    inserted = _merge_allocations(conn, p)
    unmatched, on_protected = conn.execute(statement(conn, "payments_unmatched"), {"b": p["b"]}).one()
    return {
        "payments_inserted": pays,
        "allocations_inserted": inserted["regular"] + inserted["recovery"],
        "allocations_regular_inserted": inserted["regular"],
        "allocations_recovery_inserted": inserted["recovery"],
        "allocations_unmatched_invoice": int(unmatched),
        "payments_on_written_off_invoices": int(on_protected),
    }


def _merge_allocations(conn: Connection, p: dict[str, Any]) -> dict[str, int]:
    """Staged (payment, invoice, applied amount) rows become allocations, split into 'regular' and 'recovery'.

    - Invoice written off (status written_off / partially_recovered / recovered): all of it is 'recovery'.
    - Invoice partly written off and still (partly) on the books: the part that was never written off takes the
      cash first - room = amount - written_off_amount - regular allocations already recorded on the invoice,
      consumed by this load's new payments in (payment date, payment ref) order - and only the excess is
      'recovery'. The room is derived from the allocation history, not from ``open_balance``: the source's open
      balance is authoritative and has already been merged, i.e. it may already reflect this very payment.
    - Any other invoice (open, paid, charged_off, reversed): 'regular'. A charged-off invoice is still a receivable:
      its cash is a payment (the source's open balance shows it), never recovery income.

    Neither kind touches ``open_balance`` (the source's balance is authoritative for open invoices; a recovery is
    booked by :mod:`writeoffs.recoveries_pending`, which moves ``recovered_amount``).

    Only (payment, invoice) pairs with no allocation yet are classified: sources resend their payment history
    every day, and a payment recorded as 'regular' before the invoice was written off must not turn into recovery
    income when it shows up again afterwards. Re-runs insert nothing (and the unique key (payment_id, invoice_id,
    kind) would refuse a duplicate anyway).
    """
    # Money arithmetic here is exact on both databases (NUMERIC(20, 4) on PostgreSQL, integer ten-thousandths on
    # SQLite, see writeoffs.db.money): no rounding needed, only + and - of amounts. The regular allocations
    # already recorded are aggregated once (prior), not looked up per row: the statement inserts into the table it
    # reads, and a per-row subquery would rescan the rows it has just added (quadratic on a first load).
    # One statement, sql/allocations_insert.sql (the allocation rule's one home), returning each new row's kind.
    # Where the database has data-modifying CTEs (PostgreSQL), it counts them itself (a first load can insert a
    # million allocations): the insert becomes the CTE ``ins`` of a count by kind. SQLite returns the kinds, counted
    # here.
    t0 = time.perf_counter()
    inserting = statement(conn, "allocations_insert").columns(column("kind"))
    if dialect.of(conn).writable_ctes:
        ins = inserting.cte("ins")
        found = conn.execute(select(ins.c.kind, func.count()).group_by(ins.c.kind), {"b": p["b"]}).all()
    else:
        found = list(Counter(kind for (kind,) in conn.execute(inserting, {"b": p["b"]})).items())
    counts = {kind: int(n) for kind, n in found}
    log.debug("%.2fs allocations %s", time.perf_counter() - t0, counts)
    return {"regular": counts.get("regular", 0), "recovery": counts.get("recovery", 0)}
