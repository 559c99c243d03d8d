"""The KPI charts as PNG (matplotlib): valid files of the set size, hostile labels drawn as text."""

from __future__ import annotations

import struct
from datetime import date
from decimal import Decimal
from pathlib import Path

from writeoffs.kpi_charts import ChartData
from writeoffs.kpi_png import write_pngs

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk of a PNG; AssertionError when ``data`` is not one."""
    assert data[:8] == SIGNATURE, "not a PNG signature"
    assert data[12:16] == b"IHDR", "first chunk is not IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_chart_is_a_valid_png_and_labels_are_not_formulas(tmp_path: Path) -> None:
    evil = "$\\frac{1}{0}$ " + "x" * 300  # matplotlib would parse $...$ as math (and fail on bad TeX)
    data = ChartData(
        period="2026-11",
        months=("2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"),
        trend={"US01 USD": [Decimal(v) for v in ("0", "120.50", "80", "0", "3000", "15.25")], evil: [Decimal(1)] * 6},
        rates_sales=(("US01 USD", Decimal("1.20")), ("EU01 EUR", Decimal("6.5")), (evil, None)),
        rates_ar=(("US01 USD", Decimal("3.1")),),
        aging_as_of=date(2026, 11, 30),
        aging={"USD": [("current", Decimal(0)), ("1-30", Decimal("500.00")), ("365+", Decimal("64275.75"))]},
        reasons=((evil, Decimal("100")), ("bankruptcy", Decimal("80.50"))),
    )
    paths = write_pngs(data, tmp_path / "kpi")
    assert sorted(p.name for p in paths) == sorted(
        f"2026-11-{c}.png" for c in ("writeoff-trend", "rate-of-sales", "rate-of-ar", "by-reason", "aging-buckets-USD")
    )
    for p in paths:
        raw = p.read_bytes()
        assert png_size(raw) == (800, 450) and len(raw) > 5_000, p.name
    assert not list((tmp_path / "kpi").glob("*.tmp"))
    # No data at all: still one image per chart, "no data" drawn.
    empty = write_pngs(ChartData(period="2026-12"), tmp_path / "empty")
    assert {p.name for p in empty} >= {"2026-12-writeoff-trend.png", "2026-12-aging-buckets.png"}
    assert all(png_size(p.read_bytes()) == (800, 450) for p in empty)
