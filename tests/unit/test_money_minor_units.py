"""Currency minor units and the ledger's largest amount: refused, never rounded, never re-labelled.

The rule's one home is :mod:`writeoffs.money` (``check_minor_units``, ``check_max_amount``); the ingest applies it
vectorised over whole chunks, so the last test pins the vectorised pass to the scalar functions value by value.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from writeoffs.errors import InvalidAmount, UnknownCurrency
from writeoffs.ingest import config as source_config
from writeoffs.ingest.fields import INVOICE_FIELDS
from writeoffs.ingest.sources import RawChunk
from writeoffs.ingest.validate import Context, validate_chunk
from writeoffs.money import MAX_AMOUNT, check_max_amount, check_minor_units, decimal_places


def test_max_amount_is_the_agreed_constant() -> None:
    assert Decimal("99999999999999.99") == MAX_AMOUNT


@pytest.mark.parametrize(
    ("value", "places"),
    [
        ("1234.567", 3),
        ("1234.500", 1),  # trailing zeros are not decimals: the amount is exactly 1234.5
        ("1234.5000", 1),
        ("100", 0),
        ("1E+2", 0),
        ("0.000", 0),
        ("-0.0100", 2),
        ("5E-7", 7),
        ("1.00000000000000000000000000001", 29),  # no context rounding (normalize() would say 0)
    ],
)
def test_decimal_places_counts_what_the_value_needs(value: str, places: int) -> None:
    assert decimal_places(Decimal(value)) == places


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("1234.56", "USD"),
        ("1234.5", "USD"),
        ("1234.500", "USD"),  # a NUMERIC(18, 4) column prints zeros: same amount, accepted
        ("556", "JPY"),
        ("556.00", "JPY"),
        ("1.234", "KWD"),
        ("-1.234", "KWD"),
        (Decimal("99999999999999.99"), "USD"),
        (12, "JPY"),
    ],
)
def test_amounts_the_currency_can_hold_pass(value: object, currency: str) -> None:
    check_minor_units(value, currency)
    check_max_amount(value)


@pytest.mark.parametrize(
    ("value", "currency", "message"),
    [
        ("1234.567", "USD", "1234.567 has 3 decimals; USD allows 2"),
        ("556.25", "JPY", "556.25 has 2 decimals; JPY allows 0"),
        ("556.5", "JPY", "556.5 has 1 decimal; JPY allows 0"),
        ("1.2345", "KWD", "1.2345 has 4 decimals; KWD allows 3"),
        ("45000.123450", "usd", "45000.12345 has 5 decimals; USD allows 2"),
        ("1.00000000000000000000000000001", "USD", "1.00000000000000000000000000001 has 29 decimals; USD allows 2"),
    ],
)
def test_too_many_decimals_is_refused_with_a_one_line_message(value: str, currency: str, message: str) -> None:
    with pytest.raises(InvalidAmount) as err:
        check_minor_units(value, currency)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "value", ["100000000000000.00", "-100000000000000", "99999999999999.991", Decimal("1E+20"), 10**15]
)
def test_beyond_max_amount_is_refused(value: object) -> None:
    with pytest.raises(InvalidAmount, match=r"largest amount the ledger accepts \(99999999999999\.99\)"):
        check_max_amount(value)


def test_floats_and_unknown_currencies_are_refused_not_converted() -> None:
    with pytest.raises(InvalidAmount, match="float"):
        check_minor_units(0.1, "USD")
    with pytest.raises(InvalidAmount, match="float"):
        check_max_amount(1e20)
    with pytest.raises(UnknownCurrency):
        check_minor_units("1.00", "XYZ")


# -- the vectorised ingest pass agrees with the scalar rule, value by value -----------------------------------------

CASES = [
    ("1234.56", "USD"),
    ("1234.567", "USD"),
    ("1234.5670", "USD"),
    ("1234.5600", "USD"),
    ("1234.560000", "USD"),
    ("45000.12345", "USD"),
    ("0.001", "USD"),
    ("0.000", "USD"),
    ("-0.001", "USD"),
    ("556", "JPY"),
    ("556.0", "JPY"),
    ("556.25", "JPY"),
    ("0556.50", "JPY"),
    ("1.234", "KWD"),
    ("1.2340", "KWD"),
    ("1.2345", "KWD"),
    ("99999999999999.99", "USD"),
    ("99999999999999.991", "USD"),
    ("100000000000000.00", "USD"),
    ("100000000000000", "JPY"),
    ("99999999999999", "JPY"),
    ("123456789012345678901234.5", "USD"),
    ("00000000000000000000000001.50", "USD"),
    ("+12.5", "USD"),
    ("0.10", "USD"),
    ("100.0000000", "JPY"),
    ("9999999999999999.9999", "USD"),
    ("10000000000000000", "USD"),
]


def _scalar_reason(value: str, currency: str) -> str | None:
    try:
        check_max_amount(value)
    except InvalidAmount:
        return "amount_too_large"
    try:
        check_minor_units(value, currency)
    except InvalidAmount:
        return "too_many_decimals"
    return None


def test_vectorised_ingest_pass_agrees_with_the_scalar_rule() -> None:
    cfg = source_config.load().source("billing_db")  # canonical column names, plain "." decimals
    base = {
        "entity": "US01",
        "customer_ref": "C1",
        "invoice_date": "2025-09-15",
        "due_date": "2025-10-15",
        "open_balance": "0",
    }
    rows = []
    for i, (amount, currency) in enumerate(CASES):
        negative = amount.startswith("-")
        rows.append(
            {
                **base,
                "invoice_ref": f"INV-{i}",
                "currency": currency,
                "amount": amount.lstrip("-") if negative else amount,
                "fx_rate": None if currency == "USD" else "2",
            }
        )
    names = [f.name for f in INVOICE_FIELDS]
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    chunk = RawChunk("invoices", "q", table, pa.array(range(1, len(rows) + 1), pa.int64()))
    v = validate_chunk(chunk, cfg, Context(functional={"US01": "USD"}))
    found = {q.row: q for q in v.bad}
    assert v.good.num_rows + len(v.bad) == len(rows)
    for i, (amount, currency) in enumerate(CASES):
        expected = _scalar_reason(amount.lstrip("-"), currency)
        got = found.get(i + 1)
        assert (got.reason if got else None) == expected, (amount, currency, got)
        if got:
            assert got.field == "amount", got
            assert currency in got.message or got.reason == "amount_too_large", got.message


def test_grouping_that_is_not_thousands_is_refused_not_merged_into_fewer_decimals() -> None:
    # Zero padding is not a decimal, so "45.000,00" with US separators (45.00000 once the "," goes) would be 45:
    # the grouping is checked first.
    cfg = source_config.load().source("erp_csv")  # thousands ",", decimal "."
    cols = dict(cfg.datasets["invoices"].columns)
    row = {
        "Company": "US01",
        "Customer No": "C1",
        "Invoice Date": "09/15/2025",
        "Due Date": "10/15/2025",
        "Currency": "USD",
        "Open Balance": "0",
    }
    amounts = ["45.000,00", "1,2,3", "12,34.5", "45,000.00", "1,234,567.5"]
    table = pa.table(
        {
            src: pa.array(
                [{**row, "Invoice No": f"I{i}", "Amount": a}.get(src) for i, a in enumerate(amounts)], pa.string()
            )
            for src in cols
        }
    )
    chunk = RawChunk("invoices", "f.csv", table, pa.array(range(2, 2 + len(amounts)), pa.int64()))
    v = validate_chunk(chunk, cfg, Context(functional={"US01": "USD"}))
    assert [(q.row, q.field, q.reason) for q in v.bad] == [
        (2, "amount", "not_a_number"),
        (3, "amount", "not_a_number"),
        (4, "amount", "not_a_number"),
    ]
    assert v.good["amount"].to_pylist() == [Decimal("45000"), Decimal("1234567.5")]
