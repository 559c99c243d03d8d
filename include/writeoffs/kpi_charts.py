"""The KPI charts: write-off trend, rates against the 2 % / 5 % bands, aging-bucket bars, write-offs by reason.

Data from :mod:`writeoffs.kpi` (the trend is :func:`~writeoffs.kpi.kpi_report` for each of the last months, so the
chart shows exactly the net write-offs of the monthly reports) and the aging of the period's end from the sub-ledger's
movements (:func:`writeoffs.subledger.aging_as_of`, one aggregate query). Drawn by :mod:`writeoffs.charts` as SVG;
the workspace shows them inline and the monthly KPI DAG writes them beside its Markdown report
(:func:`write_report_charts`: SVG, and PNG by :mod:`writeoffs.kpi_png`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import Connection

from writeoffs import subledger
from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.charts import bar_chart, line_chart, rate_chart
from writeoffs.kpi import KpiReport, Period, kpi_report
from writeoffs.report_store import StorePath

TREND_MONTHS = 6
_C = TypeVar("_C")  # a drawn chart: SVG text, a matplotlib Figure


@dataclass(frozen=True)
class ChartData:
    period: str
    months: tuple[str, ...] = ()
    trend: dict[str, list[Decimal]] = field(default_factory=dict)  # "ENTITY CUR" -> net written off per month
    rates_sales: tuple[tuple[str, Decimal | None], ...] = ()
    rates_ar: tuple[tuple[str, Decimal | None], ...] = ()
    aging_as_of: date | None = None
    aging: dict[str, list[tuple[str, Decimal]]] = field(default_factory=dict)  # currency -> (bucket, open balance)
    reasons: tuple[tuple[str, Decimal], ...] = ()  # functional amounts, all entities together
    thresholds: tuple[Decimal, Decimal] = (Decimal(2), Decimal(5))


def months_ending(period: Period, n: int = TREND_MONTHS) -> list[Period]:
    """The ``n`` months ending with the month ``period`` ends in, oldest first."""
    last = Period.month(period.end.year, period.end.month)
    out = [last]
    while len(out) < n:
        out.append(out[-1].previous())
    return out[::-1]


def collect(conn: Connection, report: KpiReport, *, months: int = TREND_MONTHS) -> ChartData:
    """Everything the charts draw, read on ``conn`` (run it in the same read transaction as the report)."""
    periods = months_ending(report.period, months)
    trend: dict[str, list[Decimal]] = {}
    for k, p in enumerate(periods):
        monthly = report if (p.start, p.end) == (report.period.start, report.period.end) else None
        monthly = monthly or kpi_report(conn, p.start, p.end, previous=False, thresholds=report.thresholds)
        for kpi in monthly.by_entity:
            trend.setdefault(f"{kpi.entity} {kpi.currency}", [Decimal(0)] * len(periods))[k] = kpi.net_written_off
    # The aging of the period's last day from the sub-ledger's movements (no snapshot needs to exist for it).
    snap = report.period.end
    aged = subledger.aging_as_of(conn, snap)["by_entity_currency"]
    sums: dict[tuple[str, str], Decimal] = {}
    for key, entry in aged.items():
        cur = key.split("/", 1)[1]
        for label, b in entry["buckets"].items():
            sums[(cur, label)] = sums.get((cur, label), Decimal(0)) + Decimal(b["open_balance"])
    aging: dict[str, list[tuple[str, Decimal]]] = {}
    for cur in sorted({c for c, _ in sums}):
        aging[cur] = [(b.label, sums.get((cur, b.label), Decimal(0))) for b in DEFAULT_BUCKETS]
    reasons: dict[str, Decimal] = {}
    for r in report.breakdowns.get("reason", ()):
        reasons[r.value] = reasons.get(r.value, Decimal(0)) + r.functional_amount
    th = report.thresholds
    return ChartData(
        period=report.period.label,
        months=tuple(p.label for p in periods),
        trend=trend,
        rates_sales=tuple((f"{k.entity} {k.currency}", k.rate_of_sales) for k in report.by_entity),
        rates_ar=tuple((f"{k.entity} {k.currency}", k.rate_of_ar) for k in report.by_entity),
        aging_as_of=snap,
        aging=aging,
        reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        thresholds=(th.excellent_below, th.concerning_above),
    )


def render(data: ChartData) -> dict[str, str]:
    """Chart name -> SVG text; the aging bars are one chart per currency (``aging-buckets-<CUR>``)."""
    good, bad = data.thresholds
    out = {
        "writeoff-trend": line_chart(
            "chart-writeoff-trend",
            f"Net write-offs per month, to {data.period}",
            list(data.months),
            data.trend,
            unit="functional",
        ),
        "rate-of-sales": rate_chart(
            "chart-rate-of-sales", "Write-off rate of sales (%)", data.rates_sales, good_below=good, bad_above=bad
        ),
        "rate-of-ar": rate_chart(
            "chart-rate-of-ar", "Write-off rate of AR (%)", data.rates_ar, good_below=good, bad_above=bad
        ),
        "by-reason": bar_chart("chart-by-reason", f"Write-offs by reason, {data.period}", list(data.reasons)),
    }
    for cur, bars in data.aging.items():
        out[f"aging-buckets-{cur}"] = bar_chart(
            f"chart-aging-buckets-{cur}", f"Open AR by aging bucket, {cur} ({data.aging_as_of})", bars, unit=cur
        )
    if not data.aging:
        out["aging-buckets"] = bar_chart("chart-aging-buckets", "Open AR by aging bucket (no open AR)", [])
    return out


def write_chart_files(
    data: ChartData,
    folder: StorePath,
    suffix: str,
    draw: Callable[[ChartData], Mapping[str, _C]],
    write: Callable[[_C, StorePath], None],
) -> list[StorePath]:
    """``<folder>/<period>-<chart>.<suffix>`` per chart ``draw`` makes of ``data``, each written whole by ``write``
    to a temporary file, then renamed over it (a reader never sees half a chart); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, chart in draw(data).items():
        path = folder / f"{data.period}-{name}.{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        write(chart, tmp)
        tmp.replace(path)
        out.append(path)
    return out


def _write_svg(svg: str, path: StorePath) -> None:
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n", encoding="utf-8")


def write_charts(data: ChartData, folder: StorePath) -> list[StorePath]:
    """``<folder>/<period>-<chart>.svg`` per chart (written whole, then renamed); returns the paths."""
    return write_chart_files(data, folder, "svg", render, _write_svg)


def write_report_charts(engine, report: KpiReport, folder: StorePath) -> list[StorePath]:
    """The charts of ``report`` as SVG and PNG files beside its Markdown (``reports/kpi/<period>-<chart>.svg`` and
    ``.png``, :mod:`writeoffs.kpi_png`), read in one snapshot (read-only repeatable read on PostgreSQL)."""
    from writeoffs.kpi.store import read_snapshot
    from writeoffs.kpi_png import write_pngs

    with read_snapshot(engine) as conn:
        data = collect(conn, report)
    return write_charts(data, folder) + write_pngs(data, folder)
