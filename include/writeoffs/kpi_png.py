"""The KPI charts as PNG files, for mail, slides and anything that cannot show SVG.

Drawn by matplotlib (pinned in requirements.txt; Agg backend, no display, imported only when called) from the same
:class:`writeoffs.kpi_charts.ChartData` the SVG charts draw, with the same names: ``<period>-<chart>.png`` beside the
SVG files and the Markdown report. Amounts become floats only to place marks on the canvas; every figure printed
anywhere else stays Decimal. Labels come from source data (entity codes, reasons): they are cut to
:data:`LABEL_MAX` characters and drawn as plain text (matplotlib's ``$…$`` math parsing is off).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from writeoffs.charts import PALETTE
from writeoffs.errors import shorten
from writeoffs.kpi_charts import ChartData, write_chart_files
from writeoffs.report_store import StorePath

#: Pixels: 8 x 4.5 inches at 100 dpi.
SIZE = (8.0, 4.5)
DPI = 100
LABEL_MAX = 40
GOOD, WARN, BAD = "#15803d", "#b45309", "#b91c1c"


def _label(value: object) -> str:
    return shorten(str(value), LABEL_MAX)


def _figure(title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(_label(title) if len(title) <= LABEL_MAX else shorten(title, 90), fontsize=11, loc="left")
    ax.grid(axis="y", color="#e2e8f0")
    ax.set_axisbelow(True)
    return fig, ax


def _bars(title: str, bars: Sequence[tuple[str, Decimal]], unit: str):
    fig, ax = _figure(title)
    labels = [_label(b) for b, _ in bars]
    if bars:
        ax.bar(range(len(bars)), [float(v) for _, v in bars], color=PALETTE[0])
        ax.set_xticks(
            range(len(bars)), labels, rotation=20 if len(bars) > 5 else 0, ha="right" if len(bars) > 5 else "center"
        )
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#64748b")
    ax.set_ylabel(unit)
    return fig


def _rates(title: str, rows: Sequence[tuple[str, Decimal | None]], good: Decimal, bad: Decimal):
    fig, ax = _figure(title)
    shown = [(_label(name), rate) for name, rate in rows]
    values = [float(r) if r is not None else 0.0 for _, r in shown]
    colors = [GOOD if r is not None and r < good else BAD if r is not None and r > bad else WARN for _, r in shown]
    if shown:
        ax.barh(range(len(shown)), values, color=colors)
        ax.set_yticks(range(len(shown)), [f"{n}{' (n/a)' if r is None else ''}" for n, r in shown])
        ax.invert_yaxis()
    ax.axvline(float(good), color=GOOD, linestyle="--", label=f"{good} % excellent below")
    ax.axvline(float(bad), color=BAD, linestyle="--", label=f"{bad} % concerning above")
    ax.set_xlim(0, max([float(bad) * 1.6, *values]))
    ax.set_xlabel("%")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def figures(data: ChartData) -> dict[str, object]:
    """Chart name -> matplotlib Figure, the names of :func:`writeoffs.kpi_charts.render`."""
    import matplotlib

    matplotlib.rcParams["text.parse_math"] = False  # a "$" in a reason or entity is text, not a formula
    good, bad = data.thresholds
    trend, ax = _figure(f"Net write-offs per month, to {data.period}")
    for n, (name, values) in enumerate(data.trend.items()):
        ax.plot(list(data.months), [float(v) for v in values], marker="o", color=PALETTE[n % len(PALETTE)],
                label=_label(name))  # fmt: skip
    if data.trend:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#64748b")
    ax.set_ylabel("functional currency")
    out: dict[str, object] = {
        "writeoff-trend": trend,
        "rate-of-sales": _rates("Write-off rate of sales (%)", data.rates_sales, good, bad),
        "rate-of-ar": _rates("Write-off rate of AR (%)", data.rates_ar, good, bad),
        "by-reason": _bars(f"Write-offs by reason, {data.period}", data.reasons, "functional currency"),
    }
    for cur, bars in data.aging.items():
        out[f"aging-buckets-{cur}"] = _bars(f"Open AR by aging bucket, {cur} ({data.aging_as_of})", bars, cur)
    if not data.aging:
        out["aging-buckets"] = _bars("Open AR by aging bucket (no aging snapshot)", [], "")
    return out


def write_pngs(data: ChartData, folder: StorePath) -> list[StorePath]:
    """``<folder>/<period>-<chart>.png`` per chart (written whole, then renamed); returns the paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def write(fig: object, tmp: StorePath) -> None:
        FigureCanvasAgg(fig)  # type: ignore[arg-type]
        with tmp.open("wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI, facecolor="white")  # type: ignore[attr-defined]

    return write_chart_files(data, folder, "png", figures, write)
