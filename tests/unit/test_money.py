"""Money: one constructor, quantised to the currency's minor unit with half-up rounding; floats never accepted."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from writeoffs.errors import InputError, InvalidAmount, UnknownCurrency
from writeoffs.money import (
    MINOR_UNITS,
    Money,
    check_currency,
    money_str,
    parse_amount,
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
    with pytest.raises(InvalidAmount):
        Money.of(bad, "USD")
    assert safe_decimal(bad) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "1"), (" 12.50 ", "12.50"), ("-3", "-3"), ("+4.1", "4.1"), (".5", "0.5"), ("5.", "5"), (7, "7")],
)
def test_to_decimal_accepts_plain_numbers(value, expected):
    assert to_decimal(value) == Decimal(expected)


def test_float_refused_even_through_the_dataclass_constructor():
    with pytest.raises(InvalidAmount, match="float"):
        Money(0.1, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("1,234.56", {}, "1234.56"),
        ("1234.56", {}, "1234.56"),
        ("1,234,567.8", {}, "1234567.8"),
        ("(1.00)", {}, "-1.00"),  # accounting negative
        ("(1,234.50)", {}, "-1234.50"),
        (" 45,000.00 ", {}, "45000.00"),
        ("-12.30", {}, "-12.30"),
        ("1.234,56", {"decimal_sep": ",", "thousands_sep": "."}, "1234.56"),
        ("(1.234,56)", {"decimal_sep": ",", "thousands_sep": "."}, "-1234.56"),
        ("1 234,56", {"decimal_sep": ",", "thousands_sep": " "}, "1234.56"),
        ("1'234.56", {"thousands_sep": "'"}, "1234.56"),
        ("0,5", {"decimal_sep": ",", "thousands_sep": ""}, "0.5"),
        ("999", {}, "999"),
    ],
)
def test_parse_amount(text, kwargs, expected):
    assert parse_amount(text, **kwargs) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "kwargs"),
    [
        ("", {}),
        ("   ", {}),
        ("abc", {}),
        ("NaN", {}),
        ("inf", {}),
        ("1e3", {}),
        ("(1.00", {}),
        ("1.00)", {}),
        ("()", {}),
        ("(-1.00)", {}),  # a double negative is ambiguous: refused rather than read as +1.00
        ("1.234,56", {"decimal_sep": ","}),  # '.' in the text while ',' is the decimal separator
        # A European amount read with US separators must not silently become 1.23456 (a 1000x error).
        ("1.234,56", {}),
        ("1,2,3", {}),  # misplaced grouping separators are not digits to ignore
        ("12,34.00", {}),
        (",123", {}),
    ],
)
def test_parse_amount_refuses(text, kwargs):
    with pytest.raises(InvalidAmount):
        parse_amount(text, **kwargs)


@pytest.mark.parametrize("code", ["XYZ", "", "US", "USDX", "dollar", "BTC"])
def test_unknown_currency_refused(code):
    with pytest.raises(UnknownCurrency):
        check_currency(code)
    with pytest.raises(UnknownCurrency):
        Money.of("1", code)
    with pytest.raises(UnknownCurrency):
        round_money("1", code)


def test_unknown_currency_is_an_input_error():
    # Callers that report bad rows catch InputError; an unknown currency must be one of them.
    assert issubclass(UnknownCurrency, InputError)
    assert issubclass(InvalidAmount, InputError)


def test_money_is_frozen_and_quantised():
    m = Money.of("10.005", "usd")
    assert (m.amount, m.currency) == (Decimal("10.01"), "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.amount = Decimal("1")  # type: ignore[misc]


def test_money_arithmetic_stays_in_one_currency():
    a, b = Money.of("0.10", "USD"), Money.of("0.20", "USD")
    assert (a + b).amount == Decimal("0.30")  # exact, unlike 0.1 + 0.2 in binary floating point
    assert (b - a).amount == Decimal("0.10")
    assert (-a).amount == Decimal("-0.10")
    assert a < b and a <= a
    assert Money.of("0", "JPY").is_zero()
    with pytest.raises(InvalidAmount):
        _ = a + Money.of("1", "EUR")
    with pytest.raises(InvalidAmount):
        _ = a < Money.of("1", "EUR")


@pytest.mark.parametrize(
    ("amount", "src", "rate", "dst", "expected"),
    [
        ("100.00", "USD", "0.9", "EUR", "90.00"),
        ("100.00", "USD", "151.237", "JPY", "15124"),
        ("1000", "JPY", "0.0020", "KWD", "2.000"),
        ("33.33", "EUR", "1.0815", "USD", "36.05"),  # 36.046395 rounded once, at the end
    ],
)
def test_convert_rounds_once_into_target_minor_unit(amount, src, rate, dst, expected):
    got = Money.of(amount, src).convert(rate, dst)
    assert got == Money.of(expected, dst)


@pytest.mark.parametrize("rate", ["0", "-1.2", 1.1, "abc"])
def test_convert_refuses_bad_rates(rate):
    with pytest.raises(InvalidAmount):
        Money.of("1", "USD").convert(rate, "EUR")


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
