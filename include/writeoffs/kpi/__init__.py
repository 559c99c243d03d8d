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

Layout (each module imports only those listed before it): :mod:`~writeoffs.kpi.period` (periods, thresholds,
percentages, catch-up months), :mod:`~writeoffs.kpi.model` (the result objects and their JSON form),
:mod:`~writeoffs.kpi.queries` (the SQL and its readers), :mod:`~writeoffs.kpi.compute` (:func:`kpi_report`),
:mod:`~writeoffs.kpi.render` (Markdown, tax listing CSV, headline) and :mod:`~writeoffs.kpi.store` (report files,
:func:`run_kpis`, :func:`reported_months`). Every name callers used from ``writeoffs.kpi`` is re-exported here.
"""

from writeoffs.kpi.compute import kpi_report
from writeoffs.kpi.model import RECOVERY_BENCHMARK, TAX_NOTE, BreakdownRow, Kpi, KpiReport, TrendRow
from writeoffs.kpi.period import CATCH_UP_MONTHS, Period, Thresholds, months_to_report, percent
from writeoffs.kpi.queries import DIMENSIONS
from writeoffs.kpi.render import LISTING_COLUMNS, _cell, _table, headline, render_listing_csv, render_markdown
from writeoffs.kpi.store import ReportFiles, reported_months, run_kpis, write_report

__all__ = [
    "CATCH_UP_MONTHS",
    "DIMENSIONS",
    "LISTING_COLUMNS",
    "RECOVERY_BENCHMARK",
    "TAX_NOTE",
    "BreakdownRow",
    "Kpi",
    "KpiReport",
    "Period",
    "ReportFiles",
    "Thresholds",
    "TrendRow",
    "_cell",
    "_table",
    "headline",
    "kpi_report",
    "months_to_report",
    "percent",
    "render_listing_csv",
    "render_markdown",
    "reported_months",
    "run_kpis",
    "write_report",
]
