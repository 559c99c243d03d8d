"""Money helpers: amounts quantised to the currency's minor unit with half-up rounding; floats never accepted."""

from __future__ import annotations

from decimal import Decimal

import pytest

from writeoffs.errors import InputError, InvalidAmount, UnknownCurrency
from writeoffs.money import (
    MINOR_UNITS,
    check_currency,
    money_str,
    quantum,
    round_money,
    safe_decimal,
    to_decimal,
)


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        # minor unit per currency: JPY 0, USD 2, KWD 3
        ("1234", "JPY", "1234"),
        ("1234.4", "JPY", "1234"),
        ("1234.5", "JPY", "1235"),
        ("10", "USD", "10.00"),
        ("0.125", "USD", "0.13"),  # half-up, not banker's (which gives 0.12)
        ("0.135", "USD", "0.14"),
        ("0.124999", "USD", "0.12"),
        ("-0.125", "USD", "-0.13"),  # half-up rounds away from zero on both sides
        ("2.675", "USD", "2.68"),  # the classic float trap (float 2.675 rounds to 2.67)
        ("1.0005", "KWD", "1.001"),
        ("1.0004", "KWD", "1.000"),
        ("7", "KWD", "7.000"),
        (Decimal("45000"), "USD", "45000.00"),
        (45000, "usd", "45000.00"),  # lower-case code is normalised
        ("0", "USD", "0.00"),
    ],
)
def test_round_money_quantises_to_minor_unit_half_up(value, currency, expected):
    got = round_money(value, currency)
    assert got == Decimal(expected)
    # The exponent is the minor unit: "10.00" is stored with two decimals, not as "10".
    assert got.as_tuple().exponent == -MINOR_UNITS[currency.upper()]
    assert str(got) == expected


@pytest.mark.parametrize(("currency", "digits"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3)])
def test_quantum_matches_iso_minor_unit(currency, digits):
    assert quantum(currency) == Decimal(1).scaleb(-digits)
    assert MINOR_UNITS[currency] == digits


@pytest.mark.parametrize(
    "bad",
    [
        0.1,
        1.0,
        float("nan"),
        float("inf"),
        True,  # bool is an int subclass: refused, a flag is never an amount
        None,
        [1],
        b"1.00",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "sNaN",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        "1e5",  # exponent notation hides magnitude errors in exports
        "12abc",
        "",
        "   ",
        "1.2.3",
        "--1",
        "$10",
        "0x10",
    ],
)
def test_to_decimal_refuses_floats_and_garbage(bad):
    with pytest.raises(InvalidAmount):
        to_decimal(bad)
    assert safe_decimal(bad) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "1"), (" 12.50 ", "12.50"), ("-3", "-3"), ("+4.1", "4.1"), (".5", "0.5"), ("5.", "5"), (7, "7")],
)
def test_to_decimal_accepts_plain_numbers(value, expected):
    assert to_decimal(value) == Decimal(expected)


@pytest.mark.parametrize("code", ["XYZ", "", "US", "USDX", "dollar", "BTC"])
def test_unknown_currency_refused(code):
    with pytest.raises(UnknownCurrency):
        check_currency(code)
    with pytest.raises(UnknownCurrency):
        round_money("1", code)


def test_unknown_currency_is_an_input_error():
    # Callers that report bad rows catch InputError; an unknown currency must be one of them.
    assert issubclass(UnknownCurrency, InputError)
    assert issubclass(InvalidAmount, InputError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("45000.00"), "45000.00"),
        (Decimal("-0.10"), "-0.10"),
        (Decimal("1E-4"), "0.0001"),
    ],
)
def test_money_str_is_plain_decimal_text(value, expected):
    # XCom/JSON carry amounts as strings; scientific notation would not survive a spreadsheet round trip.
    assert money_str(value) == expected
    assert Decimal(money_str(value)) == value
