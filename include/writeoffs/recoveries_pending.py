"""Book the recoveries the ingestion found: 'recovery' allocations without a recoveries row.

The merge (:mod:`writeoffs.ingest.merge`) records cash that arrives for a written-off amount as a
``payment_allocations`` row of kind 'recovery'. This step books each such allocation through
:func:`writeoffs.recovery.book_recovery`, the one place that builds recovery entries (direct method
``Dr Cash / Cr Bad Debt Recovery``; allowance method reinstate then collect).

- **Pending** = a 'recovery' allocation dated on or before the business date, on an invoice that still has
  something written off and not recovered, with no recoveries row for its (payment, invoice) - matched by payment
  id or by the recovery's idempotency key ``rec:<entity>:<payment_ref>:<invoice_id>``, so a recovery booked by
  hand for the same payment is not booked again.
- **Cap**: a recovery never exceeds what is written off minus what is already recovered. An allocation
  above that is booked up to the cap; the excess is **unapplied cash**, never income: booked ``Dr Cash / Cr Unapplied
  Cash`` (:func:`writeoffs.accounting.entries.unapplied_cash`, a liability to apply or refund), reported in the
  summary and audited (``recovery.excess``). So the GL's cash always equals the cash received.
- **Posting date**: the payment date when its fiscal period is open; late cash for a closed period is booked on the
  business date (a new entry dated into an open period, nothing re-dated), and counted in the summary.
- **Exactly once**: invoices are processed in chunks of ``chunk_size`` invoices, all allocations of an invoice in
  the same chunk, one transaction per chunk (invoices locked first). A re-run finds nothing pending; a crash
  leaves whole chunks behind, and the recoveries idempotency key refuses a second booking whatever happens.

Recoveries are rare next to invoices (a share of the written-off accounts), so booking row by row inside a chunk
keeps the entry building in one place at no measurable cost; finding the pending set and the standing unapplied
figure are set-wise queries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, select, text

from writeoffs import audit, ledger
from writeoffs.accounting import entries
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.db.locks import locked
from writeoffs.db.money import from_db_or_zero
from writeoffs.db.schema import fiscal_periods, invoices
from writeoffs.money import money_str, round_money
from writeoffs.recovery import book_recovery

#: Excess allocations listed one by one in the summary (the totals always cover all of them).
MAX_LISTED = 50

#: A 'recovery' allocation is pending until it has a recoveries row (booked, possibly with its excess as unapplied
#: cash in the same transaction) or an unapplied-cash entry (nothing was left to recover).
_PENDING = """
    FROM payment_allocations pa
    JOIN payments pm ON pm.id = pa.payment_id
    JOIN invoices i ON i.id = pa.invoice_id
    WHERE pa.kind = 'recovery' AND pa.allocated_on <= :as_of
      AND NOT EXISTS (
          SELECT 1 FROM recoveries r
          WHERE r.invoice_id = pa.invoice_id
            AND (r.payment_id = pa.payment_id
                 OR r.idempotency_key = 'rec:' || pm.entity_code || ':' || pm.payment_ref || ':'
                                        || CAST(pa.invoice_id AS VARCHAR(20))))
      AND NOT EXISTS (
          SELECT 1 FROM journal_entries u
          WHERE u.idempotency_key = 'unapplied:' || pm.entity_code || ':' || pm.payment_ref || ':'
                                    || CAST(pa.invoice_id AS VARCHAR(20)))
"""


def _dec(conn: Connection, value: object) -> Decimal:
    """A money value (or a sum/difference of them) read by raw SQL, as Decimal at 4 decimals."""
    return from_db_or_zero(conn, value).quantize(Decimal("0.0001"))


@dataclass
class PendingRecoveries:
    """What one run booked and what it could not (the excess over the amount still written off)."""

    as_of: date
    booked: int = 0
    replayed: int = 0
    booked_by_currency: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    excess_by_currency: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    excess: list[dict[str, str]] = field(default_factory=list)
    excess_count: int = 0
    booked_on_business_date: int = 0
    chunks: int = 0
    unapplied_by_currency: dict[str, Decimal] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON/XCom-safe (money as strings)."""

        def amounts(d: dict[str, Decimal]) -> dict[str, str]:
            return {cur: money_str(v) for cur, v in sorted(d.items())}

        return {
            "as_of": self.as_of.isoformat(),
            "booked": self.booked,
            "already_booked": self.replayed,
            "booked_by_currency": amounts(self.booked_by_currency),
            "excess_count": self.excess_count,
            "excess_by_currency": amounts(self.excess_by_currency),
            "excess": self.excess,
            "booked_on_business_date": self.booked_on_business_date,
            "chunks": self.chunks,
            "unapplied_recovery_cash_by_currency": amounts(self.unapplied_by_currency),
        }


def book_pending_recoveries(
    engine: Engine, as_of: date, actor: str = "recoveries", *, chunk_size: int = 500
) -> dict[str, Any]:
    """Book every pending 'recovery' allocation up to the business date; see the module docstring."""
    run = PendingRecoveries(as_of)
    after = 0
    while True:
        with engine.begin() as conn:
            chunk = _next_invoices(conn, as_of, after, chunk_size)
            if not chunk:
                break
            _book_chunk(conn, chunk, run, actor)
            run.chunks += 1
            after = chunk[-1]
    with engine.begin() as conn:
        run.unapplied_by_currency = _unapplied(conn, as_of)
        if run.booked or run.excess_count:
            audit.append(
                conn,
                actor=actor,
                action="recoveries.pending_booked",
                object_type="recoveries",
                object_id=as_of.isoformat(),
                details={k: v for k, v in run.summary().items() if k != "excess"},
            )
    return run.summary()


def _next_invoices(conn: Connection, as_of: date, after: int, limit: int) -> list[int]:
    return list(
        conn.execute(
            text(f"SELECT DISTINCT pa.invoice_id {_PENDING} AND pa.invoice_id > :after ORDER BY 1 LIMIT :n").bindparams(
                bindparam("as_of", type_=Date)
            ),
            {"as_of": as_of, "after": after, "n": limit},
        ).scalars()
    )


def _book_chunk(conn: Connection, invoice_ids: list[int], run: PendingRecoveries, actor: str) -> None:
    ids = bindparam("ids", expanding=True)
    # Lock the chunk's invoices before reading what is still recoverable (book_recovery re-checks under the lock).
    conn.execute(
        locked(conn, invoices, invoices.c.id.in_(invoice_ids), columns=(invoices.c.id,)).order_by(invoices.c.id)
    ).all()
    rows = conn.execute(
        text(
            f"""
            SELECT pa.invoice_id, pa.amount, pa.allocated_on, pm.payment_ref, i.invoice_ref, i.entity_code,
                   i.currency, i.fx_rate, i.written_off_amount - i.recovered_amount AS recoverable
            {_PENDING} AND pa.invoice_id IN :ids
            ORDER BY pa.invoice_id, pa.allocated_on, pm.payment_ref
            """
        ).bindparams(ids, bindparam("as_of", type_=Date)),
        {"as_of": run.as_of, "ids": invoice_ids},
    ).all()
    open_periods = _open_periods(conn, {(r.entity_code, ledger.period_of(_day(r.allocated_on))) for r in rows})
    remaining: dict[int, Decimal] = {}
    for r in rows:
        left = remaining.setdefault(r.invoice_id, round_money(_dec(conn, r.recoverable), r.currency))
        allocated = round_money(_dec(conn, r.amount), r.currency)
        amount = min(allocated, left)
        paid_on = _day(r.allocated_on)
        if amount > 0:
            posting_date = paid_on
            if (r.entity_code, ledger.period_of(paid_on)) not in open_periods:
                posting_date = run.as_of
                run.booked_on_business_date += 1
            result = book_recovery(conn, r.invoice_id, amount, posting_date, r.payment_ref, actor)
            if result.replayed:
                run.replayed += 1
            else:
                run.booked += 1
                run.booked_by_currency[r.currency] += result.amount
            remaining[r.invoice_id] = left - amount
        excess = allocated - amount
        if excess > 0:
            doc = {
                "entity": r.entity_code,
                "invoice_ref": r.invoice_ref,
                "payment_ref": r.payment_ref,
                "currency": r.currency,
                "allocated": money_str(allocated),
                "booked": money_str(amount),
                "excess": money_str(excess),
            }
            run.excess_count += 1
            run.excess_by_currency[r.currency] += excess
            if len(run.excess) < MAX_LISTED:
                run.excess.append(doc)
            posting_date = paid_on
            if (r.entity_code, ledger.period_of(paid_on)) not in open_periods:
                posting_date = run.as_of
            entry = entries.unapplied_cash(
                resolve_accounts(conn, r.entity_code),
                posting_date=posting_date,
                invoice_id=r.invoice_id,
                invoice_ref=r.invoice_ref,
                currency=r.currency,
                amount=excess,
                fx_rate=_rate(r.fx_rate),
                payment_ref=r.payment_ref,
            )
            ledger.post_entries(conn, [entry], created_by=actor)
            doc = {**doc, "entry_key": entry.key}
            # Unapplied cash: never income beyond what was written off. Audited once: afterwards the
            # allocation has its recoveries row, or the invoice has nothing left to recover.
            audit.append(
                conn,
                actor=actor,
                action="recovery.excess",
                object_type="invoice",
                object_id=r.invoice_id,
                details={**doc, "payment_date": paid_on},
            )


def _rate(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0000000001"))


def _day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _open_periods(conn: Connection, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    if not wanted:
        return set()
    rows = conn.execute(
        select(fiscal_periods.c.entity_code, fiscal_periods.c.period).where(
            fiscal_periods.c.entity_code.in_({e for e, _ in wanted}),
            fiscal_periods.c.period.in_({p for _, p in wanted}),
            fiscal_periods.c.status == "open",
        )
    ).all()
    return {(r.entity_code, r.period) for r in rows}


def _unapplied(conn: Connection, as_of: date) -> dict[str, Decimal]:
    """Standing figure: recovery cash received up to ``as_of`` and not booked as a recovery, per currency."""
    rows = conn.execute(
        text(
            """
            SELECT i.currency, SUM(pa.amount - COALESCE(r.booked, 0))
            FROM payment_allocations pa
            JOIN invoices i ON i.id = pa.invoice_id
            LEFT JOIN (SELECT payment_id, invoice_id, SUM(amount) AS booked FROM recoveries
                       WHERE payment_id IS NOT NULL GROUP BY payment_id, invoice_id) r
                   ON r.payment_id = pa.payment_id AND r.invoice_id = pa.invoice_id
            WHERE pa.kind = 'recovery' AND pa.allocated_on <= :as_of
            GROUP BY i.currency
            """
        ).bindparams(bindparam("as_of", type_=Date)),
        {"as_of": as_of},
    ).all()
    out = {cur: round_money(_dec(conn, v), cur) for cur, v in rows if v is not None}
    return {cur: v for cur, v in out.items() if v != 0}
