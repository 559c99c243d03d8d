"""The KPI SQL, set-wise over the books: write-off events (write-offs minus reversals) and their detail for the
breakdowns and the tax listing, sales, open AR from the sub-ledger's movements, recoveries; and the readers that run
them and sum their rows as ``Decimal``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, bindparam, text

from writeoffs.buckets import bucket_case_text
from writeoffs.db.money import from_db_or_zero, rate_from_db
from writeoffs.kpi.model import BreakdownRow
from writeoffs.money import round_money
from writeoffs.subledger import later_movements_sql

_Q4 = Decimal("0.0001")


#: Write-off entries and reversals of write-off entries posted in [:start, :end], one row per entry (its debit
#: line carries the amount and the invoice), signed: +1 write-off, -1 reversal.
_EVENTS = """
    SELECT e.entity_code, l.currency, l.functional_currency,
           CASE WHEN e.source_type = 'writeoff' THEN 1 ELSE -1 END AS sign,
           l.debit AS amount, l.functional_debit AS functional_amount,
           e.id AS entry_id, e.posting_date, COALESCE(o.id, e.id) AS writeoff_entry_id, l.invoice_id
    FROM journal_entries e
    JOIN journal_lines l ON l.entry_id = e.id AND l.debit > 0
    LEFT JOIN journal_entries o ON o.id = e.reverses_entry_id
    WHERE e.status = 'posted' AND e.posting_date >= :start AND e.posting_date <= :end
      AND (e.source_type = 'writeoff' OR (e.source_type = 'reversal' AND o.source_type = 'writeoff'))
"""


def _dpd_at_writeoff(dialect: str) -> str:
    """Days past due of the invoice on the write-off's as-of date (per dialect)."""
    if dialect == "postgresql":
        return "(w.as_of_date - i.due_date)"
    return "CAST(julianday(w.as_of_date) - julianday(i.due_date) AS INTEGER)"


def _detail(dialect: str) -> str:
    """The events with what the breakdowns and the tax listing need.

    The aging bucket at write-off is the snapshot's of the write-off's as-of date; a snapshot recomputed after
    posting no longer lists the written-off invoice (its balance is zero), so the bucket is then derived from the
    days past due on that date with the default buckets.
    """
    bucket = bucket_case_text(_dpd_at_writeoff(dialect))
    return f"""
    SELECT ev.*, w.id AS writeoff_id, w.reason_code, i.invoice_ref, i.invoice_date, i.source AS source_system,
           c.customer_ref, c.name AS customer_name, c.segment,
           COALESCE(s.bucket, CASE WHEN w.id IS NOT NULL AND i.id IS NOT NULL THEN {bucket} END) AS aging_bucket,
           COALESCE(a.approver, CASE WHEN b.tier = 'auto' THEN 'auto (small-balance tolerance)' END) AS approver
    FROM ({_EVENTS}) ev
    LEFT JOIN writeoffs w ON w.journal_entry_id = ev.writeoff_entry_id
    LEFT JOIN invoices i ON i.id = ev.invoice_id
    LEFT JOIN customers c ON c.id = i.customer_id
    LEFT JOIN writeoff_batches b ON b.id = w.batch_id
    LEFT JOIN approvals a ON a.batch_id = w.batch_id AND a.step = 'approve' AND a.decision = 'approved'
    LEFT JOIN aging_snapshots s ON s.as_of_date = w.as_of_date AND s.invoice_id = w.invoice_id
"""


#: Breakdown dimensions: name -> SQL expression over :func:`_detail`.
DIMENSIONS: dict[str, str] = {
    "segment": "COALESCE(d.segment, '(unknown)')",
    "reason": "COALESCE(d.reason_code, '(unknown)')",
    "approver": "COALESCE(d.approver, '(none recorded)')",
    "source_system": "COALESCE(d.source_system, '(unknown)')",
    "aging_bucket": "COALESCE(d.aging_bucket, '(unknown)')",
}


def _dec(conn: Connection, value: object) -> Decimal:
    """A money value (or a signed sum of them) read by raw SQL as Decimal at 4 decimals; NULL is 0."""
    return from_db_or_zero(conn, value).quantize(_Q4)


def _rows(conn: Connection, sql: str, start: date, end: date) -> Sequence[Any]:
    """Run ``sql`` with whichever of ``:start`` / ``:end`` it uses, bound as dates (SQLite stores ISO strings)."""
    given = {"start": start, "end": end}
    used = {k: v for k, v in given.items() if f":{k}" in sql}
    stmt = text(sql).bindparams(*(bindparam(k, type_=Date) for k in used))
    return conn.execute(stmt, used).all()


def _writeoffs(conn: Connection, start: date, end: date) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for r in _rows(
        conn,
        f"""
        SELECT entity_code, currency, functional_currency,
               SUM(CASE WHEN sign > 0 THEN amount ELSE 0 END) AS gross,
               SUM(CASE WHEN sign < 0 THEN amount ELSE 0 END) AS reversed,
               SUM(CASE WHEN sign > 0 THEN functional_amount ELSE 0 END) AS functional_gross,
               SUM(CASE WHEN sign < 0 THEN functional_amount ELSE 0 END) AS functional_reversed,
               SUM(sign * functional_amount) AS functional_net, SUM(sign) AS n
        FROM ({_EVENTS}) ev GROUP BY entity_code, currency, functional_currency
        """,
        start,
        end,
    ):
        out[(r.entity_code, r.currency)] = {
            "gross": _dec(conn, r.gross),
            "reversed": _dec(conn, r.reversed),
            "functional_gross": _dec(conn, r.functional_gross),
            "functional_reversed": _dec(conn, r.functional_reversed),
            "functional_net": _dec(conn, r.functional_net),
            "n": int(r.n or 0),
        }
    return out


def _sums(conn: Connection, sql: str, start: date, end: date) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """``entity_code, currency, fx_rate, amount`` rows -> {(entity, currency): (amount, functional)}.

    The functional total is sum(amount) x rate per booked rate, in Decimal: exact on both databases (SQLite must not
    multiply money by a rate in SQL).
    """
    out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for r in _rows(conn, sql, start, end):
        amount = from_db_or_zero(conn, r[3])
        functional = amount * rate_from_db(conn, r[2])
        was, was_f = out.get((r[0], r[1]), (Decimal(0), Decimal(0)))
        out[(r[0], r[1])] = (was + amount, was_f + functional)
    return {k: (a.quantize(_Q4), f.quantize(_Q4)) for k, (a, f) in out.items()}


_SALES = """
    SELECT entity_code, currency, fx_rate, SUM(amount) FROM invoices
    WHERE invoice_date >= :start AND invoice_date <= :end GROUP BY entity_code, currency, fx_rate
"""
#: Open AR at the end of the period from the sub-ledger's movements (writeoffs.subledger): exact for any past date,
#: whether or not anyone aged it on the day. Open balances are never negative, so summing every invoice's movements
#: (zero-balance invoices add nothing) equals summing the open ones.
_AR_MOVEMENTS = f"""
    SELECT i.entity_code, i.currency, i.fx_rate, SUM(i.open_balance - COALESCE(x.later, 0))
    FROM invoices i LEFT JOIN ({later_movements_sql(day=":end")}) x ON x.invoice_id = i.id
    WHERE i.invoice_date <= :end
    GROUP BY i.entity_code, i.currency, i.fx_rate
"""
_RECOVERIES = """
    SELECT i.entity_code, r.currency, i.fx_rate, SUM(r.amount)
    FROM recoveries r JOIN invoices i ON i.id = r.invoice_id
    WHERE r.recovery_date >= :start AND r.recovery_date <= :end GROUP BY i.entity_code, r.currency, i.fx_rate
"""


def _functional_currencies(conn: Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(text("SELECT code, functional_currency FROM legal_entities")).all()}


def _breakdowns(conn: Connection, start: date, end: date) -> dict[str, tuple[BreakdownRow, ...]]:
    out = {}
    for name, expr in DIMENSIONS.items():
        rows = _rows(
            conn,
            f"""
            SELECT {expr} AS value, d.currency, d.functional_currency, SUM(d.sign) AS n,
                   SUM(d.sign * d.amount) AS amount, SUM(d.sign * d.functional_amount) AS functional_amount
            FROM ({_detail(conn.dialect.name)}) d
            GROUP BY {expr}, d.currency, d.functional_currency
            ORDER BY 1, 2
            """,
            start,
            end,
        )
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
    rows = _rows(
        conn,
        f"SELECT * FROM ({_detail(conn.dialect.name)}) d "
        "ORDER BY d.posting_date, d.entity_code, d.invoice_ref, d.entry_id",
        start,
        end,
    )
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
