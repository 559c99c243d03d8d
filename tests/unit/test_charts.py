"""SVG charts: hostile labels are escaped, values drawn to scale, bands where the thresholds say."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from decimal import Decimal

from writeoffs.charts import bar_chart, line_chart, rate_chart

EVIL = '</text><script>alert(1)</script><a href="javascript:x">'


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML or this raises


def test_bar_chart_escapes_labels_and_scales_heights() -> None:
    svg = bar_chart("c1", EVIL, [(EVIL, Decimal(10)), ("b", Decimal(5)), ("c", Decimal(0))], unit="USD")
    root = parse(svg)
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert root.get("id") == "c1"
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("class") == "bar"]
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] == 2 * heights[1] and heights[2] == 0
    assert [b.get("data-value") for b in bars] == ["10", "5", "0"]


def test_line_chart_one_series_per_key() -> None:
    series = {"US01 USD": [Decimal(1), Decimal(3)], EVIL: [Decimal(2)] * 2}
    svg = line_chart("t", "Trend", ["2026-10", "2026-11"], series)
    root = parse(svg)
    lines = [e for e in root.iter("{http://www.w3.org/2000/svg}polyline")]
    assert len(lines) == 2
    assert "<script" not in svg


def test_rate_chart_bands_at_the_thresholds() -> None:
    rows = [("US01", Decimal("3.5")), ("EU01", None)]
    svg = rate_chart("r", "Rates", rows, good_below=Decimal(2), bad_above=Decimal(5))
    root = parse(svg)
    bands = {e.get("data-band"): e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("data-band")}
    assert set(bands) == {"excellent", "acceptable", "concerning"}
    x = {k: float(v.get("x")) for k, v in bands.items()}
    w = {k: float(v.get("width")) for k, v in bands.items()}
    # The acceptable band is (5 - 2) / 2 = 1.5 times as wide as the excellent one.
    assert abs(w["acceptable"] / w["excellent"] - 1.5) < 0.01 and x["excellent"] < x["acceptable"] < x["concerning"]
    assert "no base (n/a)" in svg
    assert re.search(r'data-value="3.5"', svg)
