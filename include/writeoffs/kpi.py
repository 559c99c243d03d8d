"""Write-off KPIs for a period (month, quarter or any from/to range): rates with their thresholds, recovery, timing.

What is measured, all set-wise SQL (``GROUP BY``) over the books, money as ``Decimal``:

- **Write-off amount**: write-off journal entries posted in the period minus reversals of write-off entries posted
  in the period, per entity and currency, with functional totals (the booked functional amounts of the entries).
- **Write-off rate**: net write-offs / sales of the period (invoices raised in it) and / open AR at period end
  (the sub-ledger as of the end date, summed from the invoice movements: no aging snapshot is needed).
  Classified: < 2 % excellent; 2-5 % acceptable (monitor segments); > 5 % concerning (needs review). The rate is
  rounded to 2 decimals (half-up) first and classified as reported, so "2.00 %" always reads "acceptable".
- **Recovery rate**: recoveries booked in the period / net write-offs of the period, and cumulatively up to the
  period end (all recoveries / all net write-offs): recoveries arrive months after the write-off, so the
  cumulative rate is the one to hold against the 15-25 % that collection specialists report.
- **Trend** against the previous period of the same kind (previous month, quarter, or same number of days).
- **Breakdowns** by customer segment, reason, approver (the ``approve`` step of the batch), source system
  (``invoices.source``) and aging bucket at write-off (the snapshot of the write-off's as-of date).

The tax-adviser listing (CSV) lists every write-off and reversal of the period per invoice, customer and reason.
The product reports; it does not decide deductibility.
"""

from __future__ import annotations

import calendar
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Date, bindparam, text

from writeoffs.buckets import bucket_case_text
from writeoffs.db import bulk
from writeoffs.db.money import from_db_or_zero, rate_from_db
from writeoffs.money import money_str, round_money
from writeoffs.report_store import StorePath
from writeoffs.safe_text import csv_writer, md
from writeoffs.subledger import later_movements_sql

_Q4 = Decimal("0.0001")
_PCT = Decimal("0.01")
_HUNDRED = Decimal(100)
_EPOCH = date(1900, 1, 1)
TAX_NOTE = (
    "Bookkeeping write-offs only. Whether, when and to what extent a write-off is deductible for tax purposes is "
    "for the tax adviser to decide; this listing does not decide deductibility."
)
RECOVERY_BENCHMARK = (
    "Collection specialists report recovering 15-25 % of accounts already marked for write-off; accounts contacted "
    "within 30 days recover 3-4x better."
)


# --- periods and thresholds -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    kind: str  # month | quarter | range

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"period end {self.end} is before its start {self.start}")

    @classmethod
    def of(cls, start: date, end: date) -> Period:
        """Recognise whole months and quarters (they get labels like 2026-11 and 2026-Q4)."""
        month_end = date(start.year, start.month, calendar.monthrange(start.year, start.month)[1])
        if start.day == 1 and end == month_end:
            return cls(start, end, "month")
        if start.day == 1 and start.month % 3 == 1:
            last = start.month + 2
            if end == date(start.year, last, calendar.monthrange(start.year, last)[1]):
                return cls(start, end, "quarter")
        return cls(start, end, "range")

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        return cls.of(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))

    @property
    def label(self) -> str:
        if self.kind == "month":
            return f"{self.start.year:04d}-{self.start.month:02d}"
        if self.kind == "quarter":
            return f"{self.start.year:04d}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    def previous(self) -> Period:
        if self.kind in ("month", "quarter"):
            months = 1 if self.kind == "month" else 3
            y, m = self.start.year, self.start.month - months
            if m < 1:
                y, m = y - 1, m + 12
            last_m = m + months - 1
            return Period(date(y, m, 1), date(y, last_m, calendar.monthrange(y, last_m)[1]), self.kind)
        days = (self.end - self.start).days + 1
        return Period(self.start - timedelta(days=days), self.start - timedelta(days=1), "range")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Write-off rate classes (percent): below ``excellent_below`` excellent, above ``concerning_above`` concerning."""

    excellent_below: Decimal = Decimal(2)
    concerning_above: Decimal = Decimal(5)

    def classify(self, rate: Decimal | None) -> str | None:
        if rate is None:
            return None
        if rate < self.excellent_below:
            return "excellent"
        if rate > self.concerning_above:
            return "concerning"
        return "acceptable"


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part / whole`` in percent, 2 decimals half-up; None when there is no base."""
    if whole == 0:
        return None
    return (part * _HUNDRED / whole).quantize(_PCT, rounding=ROUND_HALF_UP)


# --- result -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpi:
    """One entity and currency (``currency`` = transaction currency), or an entity's functional total."""

    entity: str
    currency: str
    written_off: Decimal  # gross, write-off entries posted in the period
    reversed: Decimal  # reversals of write-off entries posted in the period
    net_written_off: Decimal
    count: int  # write-offs minus reversals
    sales: Decimal
    open_ar: Decimal
    recoveries: Decimal  # booked in the period
    cumulative_written_off: Decimal  # net, up to period end
    cumulative_recovered: Decimal  # up to period end
    rate_of_sales: Decimal | None
    rate_of_ar: Decimal | None
    class_of_sales: str | None
    class_of_ar: str | None
    recovery_rate: Decimal | None
    cumulative_recovery_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class BreakdownRow:
    value: str
    currency: str
    count: int
    amount: Decimal
    functional_currency: str
    functional_amount: Decimal


@dataclass(frozen=True, slots=True)
class TrendRow:
    entity: str
    currency: str
    previous: Decimal
    current: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def direction(self) -> str:
        """Less written off than before is an improvement."""
        if self.change < 0:
            return "improvement"
        if self.change > 0:
            return "deterioration"
        return "no change"

    def sentence(self) -> str:
        c = self.currency
        return f"{_fmt(self.previous)} {c} -> {_fmt(self.current)} {c} = {_fmt(abs(self.change))} {c} {self.direction}"


@dataclass(frozen=True)
class KpiReport:
    period: Period
    ar_basis: str
    thresholds: Thresholds
    by_currency: tuple[Kpi, ...]
    by_entity: tuple[Kpi, ...]  # functional currency
    breakdowns: Mapping[str, tuple[BreakdownRow, ...]]
    previous: Period | None = None
    trend: tuple[TrendRow, ...] = ()
    trend_functional: tuple[TrendRow, ...] = ()
    listing: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    def kpi(self, entity: str, currency: str, *, functional: bool = False) -> Kpi:
        rows = self.by_entity if functional else self.by_currency
        for k in rows:
            if (k.entity, k.currency) == (entity, currency):
                return k
        raise KeyError((entity, currency))

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: money and rates as strings."""
        return _jsonable(
            {
                "period": {
                    "label": self.period.label,
                    "kind": self.period.kind,
                    "from": self.period.start,
                    "to": self.period.end,
                },
                "previous_period": None
                if self.previous is None
                else {"label": self.previous.label, "from": self.previous.start, "to": self.previous.end},
                "ar_basis": self.ar_basis,
                "thresholds": {
                    "excellent_below_percent": self.thresholds.excellent_below,
                    "concerning_above_percent": self.thresholds.concerning_above,
                },
                "by_entity_functional": [asdict(k) for k in self.by_entity],
                "by_entity_currency": [asdict(k) for k in self.by_currency],
                "trend": [{**asdict(t), "change": t.change, "direction": t.direction} for t in self.trend],
                "trend_functional": [
                    {**asdict(t), "change": t.change, "direction": t.direction} for t in self.trend_functional
                ],
                "breakdowns": {k: [asdict(r) for r in v] for k, v in self.breakdowns.items()},
                "recovery_benchmark": RECOVERY_BENCHMARK,
                "tax_note": TAX_NOTE,
            }
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --- SQL --------------------------------------------------------------------------------------------------------

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


def _kpi(
    entity: str,
    currency: str,
    wo: Mapping[str, Any],
    sales: Decimal,
    open_ar: Decimal,
    rec: Decimal,
    cum_wo: Decimal,
    cum_rec: Decimal,
    th: Thresholds,
) -> Kpi:
    net = wo["gross"] - wo["reversed"]
    r_sales, r_ar = percent(net, sales), percent(net, open_ar)
    return Kpi(
        entity=entity,
        currency=currency,
        written_off=wo["gross"],
        reversed=wo["reversed"],
        net_written_off=net,
        count=wo["n"],
        sales=sales,
        open_ar=open_ar,
        recoveries=rec,
        cumulative_written_off=cum_wo,
        cumulative_recovered=cum_rec,
        rate_of_sales=r_sales,
        rate_of_ar=r_ar,
        class_of_sales=th.classify(r_sales),
        class_of_ar=th.classify(r_ar),
        recovery_rate=percent(rec, net) if net > 0 else None,
        cumulative_recovery_rate=percent(cum_rec, cum_wo) if cum_wo > 0 else None,
    )


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


def kpi_report(
    conn: Connection,
    start: date,
    end: date,
    *,
    previous: bool = True,
    thresholds: Thresholds | None = None,
) -> KpiReport:
    """Compute the KPIs of [start, end] (inclusive) on one connection (run it in one read transaction)."""
    period = Period.of(start, end)
    th = thresholds or Thresholds()
    bulk.set_local_work_mem(conn)  # open AR from movements hashes per-invoice sums: in memory
    fcur = _functional_currencies(conn)
    wo = _writeoffs(conn, start, end)
    cum = _writeoffs(conn, _EPOCH, end)
    sales = _sums(conn, _SALES, start, end)
    ar = _sums(conn, _AR_MOVEMENTS, start, end)
    ar_basis = f"sub-ledger as of {end} (invoice movements)"
    rec = _sums(conn, _RECOVERIES, start, end)
    cum_rec = _sums(conn, _RECOVERIES, _EPOCH, end)
    zero = {k: Decimal(0) for k in ("gross", "reversed", "functional_gross", "functional_reversed", "functional_net")}
    zero["n"] = 0
    z2 = (Decimal(0), Decimal(0))

    keys = sorted(set(wo) | set(sales) | set(ar) | set(rec) | set(cum) | set(cum_rec))
    by_currency = []
    ent_acc: dict[str, dict[str, Any]] = {}
    for entity, cur in keys:
        w, c = wo.get((entity, cur), zero), cum.get((entity, cur), zero)
        by_currency.append(
            _kpi(
                entity,
                cur,
                w,
                sales.get((entity, cur), z2)[0],
                ar.get((entity, cur), z2)[0],
                rec.get((entity, cur), z2)[0],
                c["gross"] - c["reversed"],
                cum_rec.get((entity, cur), z2)[0],
                th,
            )
        )
        f = fcur.get(entity, cur)
        acc = ent_acc.setdefault(
            entity, {k: Decimal(0) for k in ("gross", "reversed", "sales", "ar", "rec", "cum", "cum_rec")} | {"n": 0}
        )
        acc["gross"] += w["functional_gross"]
        acc["reversed"] += w["functional_reversed"]
        acc["n"] += w["n"]
        acc["sales"] += sales.get((entity, cur), z2)[1]
        acc["ar"] += ar.get((entity, cur), z2)[1]
        acc["rec"] += rec.get((entity, cur), z2)[1]
        acc["cum"] += c["functional_net"]
        acc["cum_rec"] += cum_rec.get((entity, cur), z2)[1]
        acc["currency"] = f
    by_entity = []
    for entity, acc in sorted(ent_acc.items()):
        f = acc["currency"]
        w = {"gross": round_money(acc["gross"], f), "reversed": round_money(acc["reversed"], f), "n": acc["n"]}
        by_entity.append(
            _kpi(
                entity,
                f,
                w,
                round_money(acc["sales"], f),
                round_money(acc["ar"], f),
                round_money(acc["rec"], f),
                round_money(acc["cum"], f),
                round_money(acc["cum_rec"], f),
                th,
            )
        )

    prev_period = trend = trend_f = None
    if previous:
        prev_period = period.previous()
        prev_pairs, prev_f = _net_by_pair(conn, prev_period.start, prev_period.end)
        cur_pairs, cur_f = _net_by_pair(conn, start, end)
        trend = tuple(
            TrendRow(e, c, prev_pairs.get((e, c), Decimal(0)), cur_pairs.get((e, c), Decimal(0)))
            for e, c in sorted(set(prev_pairs) | set(cur_pairs))
        )
        trend_f = tuple(
            TrendRow(e, fcur.get(e, "?"), prev_f.get(e, Decimal(0)), cur_f.get(e, Decimal(0)))
            for e in sorted(set(prev_f) | set(cur_f))
        )
    return KpiReport(
        period=period,
        ar_basis=ar_basis,
        thresholds=th,
        by_currency=tuple(by_currency),
        by_entity=tuple(by_entity),
        breakdowns=_breakdowns(conn, start, end),
        previous=prev_period,
        trend=trend or (),
        trend_functional=trend_f or (),
        listing=_listing(conn, start, end),
    )


# --- rendering and files ----------------------------------------------------------------------------------------


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else f"{value.quantize(_PCT, rounding=ROUND_HALF_UP):,}"


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value} %"


def _cell(value: object) -> str:
    return md(value)  # customer data renders literally (writeoffs.safe_text)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], right: int = 1) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if n < right else "---:" for n in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return lines


def render_markdown(report: KpiReport, listing_name: str | None = None) -> str:
    p, th = report.period, report.thresholds
    out = [
        f"# Write-off KPIs {p.label} ({p.start.isoformat()} to {p.end.isoformat()})",
        "",
        f"- Write-off rate classes: below {th.excellent_below} % **excellent**; {th.excellent_below}-"
        f"{th.concerning_above} % **acceptable** (monitor segments); above {th.concerning_above} % **concerning** "
        "(needs review). Rates are rounded to 2 decimals, then classified. A rate above 2-3 % of AR signals a "
        "collections problem.",
        f"- Open AR basis: {report.ar_basis}.",
        "- Write-off amount = write-offs posted in the period minus reversals posted in the period.",
        "",
        "## Per entity (functional currency)",
        "",
    ]
    head = [
        "Entity",
        "Currency",
        "Written off (net)",
        "Sales",
        "% of sales",
        "Class",
        "Open AR",
        "% of AR",
        "Class",
        "Recoveries",
        "Recovery rate",
        "Cumulative recovery rate",
    ]
    out += _table(
        head,
        [
            (
                k.entity,
                k.currency,
                _fmt(k.net_written_off),
                _fmt(k.sales),
                _pct(k.rate_of_sales),
                k.class_of_sales or "n/a",
                _fmt(k.open_ar),
                _pct(k.rate_of_ar),
                k.class_of_ar or "n/a",
                _fmt(k.recoveries),
                _pct(k.recovery_rate),
                _pct(k.cumulative_recovery_rate),
            )
            for k in report.by_entity
        ],
        right=2,
    )
    out += ["", "## Per entity and currency", ""]
    out += _table(
        [
            "Entity",
            "Currency",
            "Written off",
            "Reversed",
            "Net",
            "Count",
            "Sales",
            "% of sales",
            "Class",
            "Open AR",
            "% of AR",
            "Class",
            "Recoveries",
            "Recovery rate",
            "Cumulative recovery rate",
        ],
        [
            (
                k.entity,
                k.currency,
                _fmt(k.written_off),
                _fmt(k.reversed),
                _fmt(k.net_written_off),
                k.count,
                _fmt(k.sales),
                _pct(k.rate_of_sales),
                k.class_of_sales or "n/a",
                _fmt(k.open_ar),
                _pct(k.rate_of_ar),
                k.class_of_ar or "n/a",
                _fmt(k.recoveries),
                _pct(k.recovery_rate),
                _pct(k.cumulative_recovery_rate),
            )
            for k in report.by_currency
        ],
        right=2,
    )
    if report.previous is not None:
        pr = report.previous
        out += ["", f"## Trend vs previous period {pr.label} ({pr.start.isoformat()} to {pr.end.isoformat()})", ""]
        out += _table(
            ["Entity", "Currency", "Previous", "Current", "Change", "Direction"],
            [
                (t.entity, t.currency, _fmt(t.previous), _fmt(t.current), _fmt(t.change), t.direction)
                for t in (*report.trend_functional, *report.trend)
            ],
            right=2,
        )
        out += [""] + [f"- {t.entity}: {t.sentence()}" for t in report.trend_functional]
    out += [
        "",
        "## Recovery rate",
        "",
        f"Recoveries / net amounts written off. {RECOVERY_BENCHMARK} The period rate "
        "compares recoveries booked in the period with write-offs of the same period; the cumulative rate (all "
        "recoveries / all net write-offs up to the period end) is the one to compare with the benchmark.",
    ]
    titles = {
        "segment": "customer segment",
        "reason": "reason",
        "approver": "approver",
        "source_system": "source system",
        "aging_bucket": "aging bucket at write-off",
    }
    for name, rows in report.breakdowns.items():
        out += ["", f"## By {titles.get(name, name)}", ""]
        out += _table(
            [
                titles.get(name, name).capitalize(),
                "Currency",
                "Count",
                "Net written off",
                "Functional",
                "Net (functional)",
            ],
            [
                (r.value, r.currency, r.count, _fmt(r.amount), r.functional_currency, _fmt(r.functional_amount))
                for r in rows
            ],
            right=2,
        )
    out += ["", "## For the tax adviser", "", TAX_NOTE]
    if listing_name:
        out += ["", f"Write-offs of the period per invoice, customer and reason: `{listing_name}`."]
    return "\n".join(out) + "\n"


LISTING_COLUMNS = (
    "posting_date",
    "entity",
    "entry_type",
    "journal_entry_id",
    "writeoff_id",
    "invoice_ref",
    "invoice_date",
    "customer_ref",
    "customer_name",
    "segment",
    "reason_code",
    "approver",
    "currency",
    "amount",
    "functional_currency",
    "functional_amount",
)


def render_listing_csv(report: KpiReport) -> str:
    """The tax-adviser listing; the first line is a ``#`` comment stating that deductibility is the adviser's call."""
    buf = io.StringIO()
    buf.write(f"# Write-offs {report.period.label}: {TAX_NOTE}\n")
    w = csv_writer(buf, lineterminator="\n")  # formula-looking text neutralised (writeoffs.safe_text)
    w.writerow(LISTING_COLUMNS)
    for row in report.listing:
        w.writerow([_jsonable(row[c]) if row[c] is not None else "" for c in LISTING_COLUMNS])
    return buf.getvalue()


@dataclass(frozen=True, slots=True)
class ReportFiles:
    markdown: StorePath
    json: StorePath
    listing: StorePath

    def summary(self) -> dict[str, str]:
        from writeoffs.report_store import location

        return {"markdown": location(self.markdown), "json": location(self.json), "listing": location(self.listing)}


def _write(path: StorePath, content: str) -> None:
    # Temp file then rename: a reader (or a retried task) never sees half a report.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def write_report(report: KpiReport, base_dir: Path | None = None, *, reports: StorePath | None = None) -> ReportFiles:
    """``<reports>/kpi/<period>.md``, ``.json`` and ``<period>-tax-listing.csv`` (replaced). ``reports`` is the
    reports store's root (:mod:`writeoffs.report_store`; default ``WRITEOFFS_REPORTS_STORE``, else
    ``$WRITEOFFS_DATA_DIR/reports``); ``base_dir`` a data folder whose ``reports`` folder is used instead."""
    from writeoffs.report_store import reports_under

    folder = reports_under(base_dir, reports) / "kpi"
    folder.mkdir(parents=True, exist_ok=True)
    label = report.period.label
    files = ReportFiles(folder / f"{label}.md", folder / f"{label}.json", folder / f"{label}-tax-listing.csv")
    _write(files.listing, render_listing_csv(report))
    _write(files.json, json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    _write(files.markdown, render_markdown(report, files.listing.name))
    return files


def run_kpis(
    engine: Any,
    start: date,
    end: date,
    *,
    previous: bool = True,
    base_dir: Path | None = None,
    reports: StorePath | None = None,
) -> tuple[KpiReport, ReportFiles]:
    """Compute on one consistent snapshot and write the files (the DAG and CLI entry point)."""
    with engine.connect() as raw:
        conn = (
            raw.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            if raw.dialect.name == "postgresql"
            else raw
        )
        with conn.begin():
            report = kpi_report(conn, start, end, previous=previous)
    return report, write_report(report, base_dir, reports=reports)


#: How many missed months one run catches up at most (older gaps: run them by hand with ``period``).
CATCH_UP_MONTHS = 12


def reported_months(base_dir: Path | None = None, *, reports: StorePath | None = None) -> set[str]:
    """Months (``YYYY-MM``) whose monthly report is in the reports store (its JSON is written last but one, the
    Markdown last); ``base_dir`` and ``reports`` as for :func:`write_report`."""
    from writeoffs.report_store import reports_under

    folder = reports_under(base_dir, reports) / "kpi"
    if not folder.is_dir():
        return set()
    out = set()
    for markdown in folder.glob("????-??.md"):
        label = markdown.stem
        if (folder / f"{label}.json").exists():
            out.add(label)
    return out


def months_to_report(target: Period, reported: set[str], *, limit: int = CATCH_UP_MONTHS) -> list[Period]:
    """The month ``target`` and the months missed since the latest one reported before it, oldest first.

    A monthly run that did not happen (scheduler down, a failed month) leaves no report; the next run reports it
    too, from the sub-ledger as of that month's end (movements: nothing depends on what ran on the day). With no
    earlier report at all (a first run) only ``target`` is reported; at most ``limit`` months in one run.
    """
    if target.kind != "month":
        raise ValueError(f"catch-up works on months, not {target.kind!r}")
    earlier = sorted(m for m in reported if m < target.label)
    out = [target]
    if not earlier:
        return out
    p = target.previous()
    while p.label > earlier[-1] and len(out) < limit:
        out.append(p)
        p = p.previous()
    return sorted(out, key=lambda q: q.start)


def headline(report: KpiReport) -> str:
    parts = [
        f"{k.entity} {_fmt(k.net_written_off)} {k.currency} ({_pct(k.rate_of_sales)} of sales, "
        f"{k.class_of_sales or 'n/a'})"
        for k in report.by_entity
    ]
    return f"Write-off KPIs {report.period.label}: " + ("; ".join(parts) if parts else "no activity")
