"""Number and date formats are explicit per source and applied exactly: ambiguous or implausible values are
quarantined with row and field, never guessed (issue 15: ``"12,34"`` read as 1234.00; year 0023 aged 730,899 days).
"""

from __future__ import annotations

import pytest
from conftest import AS_OF
from ingest_support import HEADER, invoice_line, source_for
from sqlalchemy import select

from writeoffs.errors import ConfigError
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.ingest.tables import ingest_quarantine


def _stage(ledger, tmp_path, lines, **over):
    (tmp_path / "invoices.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    cfg = source_for(tmp_path, **over)
    summary = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    with ledger.connect() as conn:
        q = conn.execute(
            select(ingest_quarantine.c.source_row, ingest_quarantine.c.field, ingest_quarantine.c.reason)
        ).all()
    return summary, sorted(tuple(r) for r in q)


def test_decimal_comma_with_dot_decimal_and_comma_thousands_is_quarantined(ledger, tmp_path) -> None:
    summary, q = _stage(ledger, tmp_path, [invoice_line(1), invoice_line(2, amount="12,34")])
    assert summary["rows_accepted"] == 1
    assert q == [(3, "amount", "not_a_number")]


def test_year_0023_is_quarantined_as_implausible(ledger, tmp_path) -> None:
    _, q = _stage(ledger, tmp_path, [invoice_line(1), invoice_line(2, **{"Invoice Date": "09/15/0023"})])
    assert q == [(3, "invoice_date", "implausible_date")]


def test_due_date_centuries_ahead_is_quarantined(ledger, tmp_path) -> None:
    _, q = _stage(ledger, tmp_path, [invoice_line(1), invoice_line(2, **{"Due Date": "10/15/2925"})])
    assert q == [(3, "due_date", "implausible_date")]


def test_date_range_is_configurable(ledger, tmp_path) -> None:
    lines = [invoice_line(1), invoice_line(2, **{"Invoice Date": "09/15/1999", "Due Date": "10/15/1999"})]
    _, q = _stage(ledger, tmp_path, lines, earliest_date="2000-01-01")
    assert q == [(3, "invoice_date", "implausible_date")]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"decimal_sep": ","}, "decimal_sep and thousands_sep must differ"),
        ({"decimal_sep": "x"}, "decimal_sep"),
        ({"thousands_sep": "5"}, "thousands_sep"),
        ({"max_days_ahead": -1}, "max_days_ahead"),
    ],
)
def test_unsafe_number_settings_are_refused(tmp_path, over, message) -> None:
    with pytest.raises(ConfigError, match=message):
        source_for(tmp_path, **over)


# -- negative-number style: explicit per source, anything else is ambiguous ------------------------------------
@pytest.mark.parametrize(
    ("style", "amount", "reason"),
    [
        ("leading_minus", "-100.00", "negative_amount"),
        ("leading_minus", "(100.00)", "ambiguous_sign"),
        ("leading_minus", "100.00-", "ambiguous_sign"),
        ("parentheses", "(100.00)", "negative_amount"),
        ("parentheses", "-100.00", "ambiguous_sign"),
        ("parentheses", "(-100.00)", "ambiguous_sign"),
        ("parentheses", "(100.00", "ambiguous_sign"),
        ("trailing_minus", "100.00-", "negative_amount"),
        ("trailing_minus", "-100.00", "ambiguous_sign"),
        ("trailing_minus", "(100.00)", "ambiguous_sign"),
    ],
)
def test_negative_style_is_explicit_and_other_signs_are_quarantined(ledger, tmp_path, style, amount, reason) -> None:
    # A negative invoice amount is never valid: read in the source's style it is `negative_amount` (understood as a
    # negative number); written in another style it is `ambiguous_sign` (never guessed), naming file, row and field.
    summary, q = _stage(
        ledger,
        tmp_path,
        [invoice_line(1), invoice_line(2, amount=amount, **{"Open Balance": "0.00"})],
        negative_style=style,
    )
    assert summary["rows_accepted"] == 1
    assert q == [(3, "amount", reason)]
    with ledger.connect() as conn:
        file = conn.execute(select(ingest_quarantine.c.source_file)).scalar_one()
    assert file == "invoices.csv"


def test_unknown_negative_style_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="negative_style"):
        source_for(tmp_path, negative_style="minus_or_parentheses")
