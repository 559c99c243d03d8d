"""Rendering a report: the Markdown report (:func:`render_markdown`), the tax-adviser listing CSV
(:func:`render_listing_csv`) and the one-line :func:`headline`. Customer data goes through :mod:`writeoffs.safe_text`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal

from writeoffs.kpi.model import RECOVERY_BENCHMARK, TAX_NOTE, Kpi, KpiReport, _fmt, _jsonable
from writeoffs.kpi.period import Period
from writeoffs.safe_text import csv_writer, md


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
    out = _intro(report)
    out += _per_entity(report)
    out += _per_currency(report)
    if report.previous is not None:
        out += _trend(report, report.previous)
    out += _recovery_note()
    out += _breakdowns(report)
    out += ["", "## For the tax adviser", "", TAX_NOTE]
    if listing_name:
        out += ["", f"Write-offs of the period per invoice, customer and reason: `{listing_name}`."]
    return "\n".join(out) + "\n"


def _intro(report: KpiReport) -> list[str]:
    p, th = report.period, report.thresholds
    return [
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


#: The columns both per-entity tables end with: the rates of sales and AR with their classes, and recoveries.
_RATE_HEAD = (
    "Sales",
    "% of sales",
    "Class",
    "Open AR",
    "% of AR",
    "Class",
    "Recoveries",
    "Recovery rate",
    "Cumulative recovery rate",
)


def _rate_cells(k: Kpi) -> tuple[object, ...]:
    """The cells of :data:`_RATE_HEAD` for one KPI row."""
    return (
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


def _per_entity(report: KpiReport) -> list[str]:
    head = ["Entity", "Currency", "Written off (net)", *_RATE_HEAD]
    return _table(
        head,
        [(k.entity, k.currency, _fmt(k.net_written_off), *_rate_cells(k)) for k in report.by_entity],
        right=2,
    )


def _per_currency(report: KpiReport) -> list[str]:
    out = ["", "## Per entity and currency", ""]
    out += _table(
        ["Entity", "Currency", "Written off", "Reversed", "Net", "Count", *_RATE_HEAD],
        [
            (
                k.entity,
                k.currency,
                _fmt(k.written_off),
                _fmt(k.reversed),
                _fmt(k.net_written_off),
                k.count,
                *_rate_cells(k),
            )
            for k in report.by_currency
        ],
        right=2,
    )
    return out


def _trend(report: KpiReport, pr: Period) -> list[str]:
    out = ["", f"## Trend vs previous period {pr.label} ({pr.start.isoformat()} to {pr.end.isoformat()})", ""]
    out += _table(
        ["Entity", "Currency", "Previous", "Current", "Change", "Direction"],
        [
            (t.entity, t.currency, _fmt(t.previous), _fmt(t.current), _fmt(t.change), t.direction)
            for t in (*report.trend_functional, *report.trend)
        ],
        right=2,
    )
    out += [""] + [f"- {t.entity}: {t.sentence()}" for t in report.trend_functional]
    return out


def _recovery_note() -> list[str]:
    return [
        "",
        "## Recovery rate",
        "",
        f"Recoveries / net amounts written off. {RECOVERY_BENCHMARK} The period rate "
        "compares recoveries booked in the period with write-offs of the same period; the cumulative rate (all "
        "recoveries / all net write-offs up to the period end) is the one to compare with the benchmark.",
    ]


def _breakdowns(report: KpiReport) -> list[str]:
    titles = {
        "segment": "customer segment",
        "reason": "reason",
        "approver": "approver",
        "source_system": "source system",
        "aging_bucket": "aging bucket at write-off",
    }
    out: list[str] = []
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
    return out


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


def headline(report: KpiReport) -> str:
    parts = [
        f"{k.entity} {_fmt(k.net_written_off)} {k.currency} ({_pct(k.rate_of_sales)} of sales, "
        f"{k.class_of_sales or 'n/a'})"
        for k in report.by_entity
    ]
    return f"Write-off KPIs {report.period.label}: " + ("; ".join(parts) if parts else "no activity")
