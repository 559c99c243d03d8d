"""Server-rendered SVG charts (no library, no script): lines over periods, bars, rates against bands.

Each function returns one standalone ``<svg>`` element (valid as a file and inline in HTML). Every label is XML
escaped and cut; values are Decimals, drawn on a linear scale from zero. The charts carry ``id`` and
``data-testid`` attributes and a ``<title>`` (accessible name), and each data point a ``data-value``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from xml.sax.saxutils import escape

from writeoffs.errors import shorten

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 36, 48
PALETTE = ("#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490", "#4d7c0f", "#9d174d")
LABEL_MAX = 24


def _t(value: object, limit: int = LABEL_MAX) -> str:
    return escape(shorten(str(value), limit), {'"': "&quot;"})


def _num(value: Decimal) -> str:
    return f"{value:,.2f}"


def _scale_max(values: Sequence[Decimal]) -> Decimal:
    top = max((v for v in values), default=Decimal(0))
    return top if top > 0 else Decimal(1)


def _frame(chart_id: str, title: str, inner: str, *, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_t(chart_id, 60)}" data-testid="{_t(chart_id, 60)}" '
        f'class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="11"><title>{_t(title, 120)}</title>'
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>'
        f'<text x="{LEFT}" y="20" font-size="13" font-weight="bold">{_t(title, 90)}</text>{inner}</svg>'
    )


def _y_axis(top: Decimal, plot_h: int, unit: str) -> str:
    out = []
    for k in range(5):
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#475569">{_t(_num(value))}</text>'
        )
    out.append(f'<text x="8" y="{TOP - 8}" fill="#475569">{_t(unit, 20)}</text>')
    return "".join(out)


def line_chart(
    chart_id: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[Decimal]], *, unit: str = ""
) -> str:
    """One polyline per series over the ``labels`` (periods, oldest first), with a legend."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _scale_max([v for vs in series.values() for v in vs])
    step = plot_w / max(len(labels) - 1, 1)
    parts = [_y_axis(top, plot_h, unit)]
    for k, label in enumerate(labels):
        x = LEFT + step * k
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_t(label, 10)}</text>')
    for n, (name, values) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        pts = [(LEFT + step * k, TOP + plot_h - float(v / top) * plot_h) for k, v in enumerate(values)]
        if len(pts) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for (x, y), v, label in zip(pts, values, labels, strict=False):
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}" data-value="{v}">'
                f"<title>{_t(name)} {_t(label, 10)}: {_t(_num(v))}</title></circle>"
            )
        lx = LEFT + 120 * n
        parts.append(
            f'<rect x="{lx}" y="{HEIGHT - 18}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{HEIGHT - 9}">{_t(name, 16)}</text>'
        )
    if not labels:
        parts.append(f'<text x="{LEFT}" y="{TOP + 20}" fill="#64748b">no data</text>')
    return _frame(chart_id, title, "".join(parts))


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, Decimal]], *, unit: str = "") -> str:
    """Vertical bars in the given order (e.g. aging buckets youngest first)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _scale_max([v for _, v in bars])
    slot = plot_w / max(len(bars), 1)
    parts = [_y_axis(top, plot_h, unit)]
    for k, (label, value) in enumerate(bars):
        h = max(float(value / top) * plot_h, 0.0)
        x = LEFT + slot * k + slot * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}" data-label="{_t(label, 40)}" data-value="{value}">'
            f"<title>{_t(label, 40)}: {_t(_num(value))}</title></rect>"
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_t(label, 12)}</text>'
        )
    if not bars:
        parts.append(f'<text x="{LEFT}" y="{TOP + 20}" fill="#64748b">no data</text>')
    return _frame(chart_id, title, "".join(parts))


def rate_chart(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, Decimal | None]],
    *,
    good_below: Decimal = Decimal(2),
    bad_above: Decimal = Decimal(5),
) -> str:
    """Horizontal bars of rates in percent over the bands: below ``good_below`` green, above ``bad_above`` red."""
    row_h = 26
    height = TOP + BOTTOM + row_h * max(len(rows), 1)
    plot_w = WIDTH - LEFT - RIGHT - 60
    top = max([bad_above * Decimal("1.6"), *[r for _, r in rows if r is not None]])
    x_of = lambda v: LEFT + 60 + float(v / top) * plot_w  # noqa: E731
    plot_bottom = height - BOTTOM
    bands = (
        (Decimal(0), good_below, "#dcfce7", "excellent"),
        (good_below, bad_above, "#fef3c7", "acceptable"),
        (bad_above, top, "#fee2e2", "concerning"),
    )
    parts = [
        f'<rect class="band" data-band="{name}" x="{x_of(lo):.1f}" y="{TOP}" width="{x_of(hi) - x_of(lo):.1f}" '
        f'height="{plot_bottom - TOP}" fill="{fill}"/>'
        f'<text x="{x_of(lo) + 3:.1f}" y="{plot_bottom + 14}" fill="#475569">{_t(_num(lo))} %</text>'
        for lo, hi, fill, name in bands
    ]
    for k, (label, rate) in enumerate(rows):
        y = TOP + 6 + row_h * k
        parts.append(f'<text x="{LEFT + 54}" y="{y + 13}" text-anchor="end">{_t(label, 18)}</text>')
        if rate is None:
            parts.append(f'<text x="{LEFT + 62}" y="{y + 13}" fill="#64748b">no base (n/a)</text>')
            continue
        parts.append(
            f'<rect class="bar" x="{LEFT + 60}" y="{y}" width="{max(x_of(rate) - LEFT - 60, 1):.1f}" height="16" '
            f'fill="#1e293b" data-label="{_t(label, 40)}" data-value="{rate}"><title>{_t(label, 40)}: {rate} %</title>'
            f'</rect><text x="{x_of(rate) + 4:.1f}" y="{y + 13}">{_t(rate)} %</text>'
        )
    if not rows:
        parts.append(f'<text x="{LEFT + 62}" y="{TOP + 18}" fill="#64748b">no data</text>')
    return _frame(chart_id, title, "".join(parts), height=height)
