"""Nothing hostile in what people open (issue 15): formula prefixes in every CSV we write are neutralised, numbers
stay numbers; customer text in Markdown renders literally. Attack strings go through the real writers."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from writeoffs import approval_view, gl_export
from writeoffs.safe_text import csv_cell, md

ATTACKS = ['=HYPERLINK("http://evil","x")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1"]


@pytest.mark.parametrize("value", ATTACKS)
def test_formula_prefixes_are_neutralised(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["-120.50", "+3", "0.00", "-", "plain", "INV-001", 12, Decimal("-1.5"), None])
def test_numbers_and_plain_text_stay(value) -> None:
    assert csv_cell(value) == value


@pytest.mark.parametrize(
    ("text", "must_not_contain"),
    [
        ("[pay here](http://evil)", "[pay here]"),
        ("![x](http://evil/img.png)", "!["),
        ("`x` | y", "`x`"),
        ("a|b", "a|b"),
        ("<img src=x onerror=alert(1)>", "<img"),
        ("_emph_ and **bold**", "**bold**"),
        ("line\n# heading", "\n"),
    ],
)
def test_markdown_escapes(text: str, must_not_contain: str) -> None:
    assert must_not_contain not in md(text)


def test_markdown_keeps_ordinary_words_readable() -> None:
    assert md("statute_expired") == "statute_expired"
    assert md("Northwind Traders, Inc. 2026-11-24") == "Northwind Traders, Inc. 2026-11-24"


def _view(name: str, ref: str) -> approval_view.BatchView:
    item = approval_view.BatchItem(
        1, ref, "C-1", name, Decimal("-0.00") + Decimal("120.50"), "statute_expired", "r1", 400, "365+", "proposed"
    )
    return approval_view.BatchView(
        7, "k", "US01", "USD", "t1", date(2026, 11, 24), "pending", "v1", "h", None, None, (item,)
    )


def test_candidates_csv_and_approval_request(tmp_path) -> None:
    view = _view('=HYPERLINK("http://evil","x")', "[click](http://evil)")
    path = approval_view.write_candidates_csv(tmp_path, view)
    rows = list(csv.reader(path.open(encoding="utf-8")))
    header = rows[0]
    row = dict(zip(header, rows[1], strict=True))
    assert row["customer_name"].startswith("'=")
    assert row["amount"] == "120.50"  # a number stays a number
    body = approval_view.summary_markdown(view)
    assert "[click](http://evil)" not in body and "\\[click\\]" in body


def test_journal_export_csv() -> None:
    row = ["k", "US01", "2026-11-24", "2026-11", "1", "1200", "USD", "-5.00", "0.00", "USD", "5.00", "0.00"]
    out = gl_export.render_csv([[*row, "@INV", "=cmd|' /C calc'!A0"]]).decode()
    last = list(csv.reader(io.StringIO(out)))[1]
    assert last[-2] == "'@INV" and last[-1].startswith("'=") and last[7] == "-5.00"


def test_kpi_and_reconciliation_markdown_cells_and_the_tax_listing_writer_use_the_helpers() -> None:
    from writeoffs import kpi, reconcile

    for cell in (kpi._cell, reconcile._cell, approval_view._cell):
        assert cell("[x](http://evil) | `y`") == md("[x](http://evil) | `y`")
    table = "\n".join(kpi._table(["customer", "amount"], [["![i](http://evil)", "1.00"]]))
    assert "![i]" not in table and "\\!\\[i\\]" in table
    import inspect

    assert "csv_writer(" in inspect.getsource(kpi.render_listing_csv)
