"""Money as ``Decimal``: one constructor, explicit rounding to the currency's minor unit.

Never floating point in an accounting system: a float passed in is refused rather than converted, because
``Decimal(0.1)`` silently carries binary noise into the books.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from writeoffs.errors import InvalidAmount, UnknownCurrency

# ISO 4217 active codes with their minor units (number of decimals). Codes not listed are refused.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF "
        "CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG "
        "HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MKD MMK MNT MOP MRU MUR "
        "MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG "
        "SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST "
        "XCD YER ZAR ZMW ZWL".split(),
        2,
    ),
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}

#: Rounding used everywhere money is quantised. Half-up is what invoices and most ERPs print; it is stated once.
ROUNDING = ROUND_HALF_UP
#: Scale of money columns in the database (NUMERIC(20, 4)): enough for every ISO minor unit.
DB_SCALE = 4
#: Largest absolute amount the ledger accepts (both databases; SQLite stores money as int64 at scale 4).
MAX_AMOUNT = Decimal("99999999999999.99")

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def check_currency(code: str) -> str:
    """Return the upper-cased ISO code, or raise :class:`UnknownCurrency`."""
    norm = (code or "").strip().upper()
    if norm not in MINOR_UNITS:
        raise UnknownCurrency(f"unknown currency {code!r} (expected an ISO 4217 code such as USD or EUR)")
    return norm


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-MINOR_UNITS[check_currency(currency)])


def to_decimal(value: object) -> Decimal:
    """Strictly convert ``value`` to a finite Decimal. Floats are refused on purpose."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmount(f"amount {value!r} is a {type(value).__name__}; money must be Decimal, int or str")
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            raise InvalidAmount(f"amount {value!r} is not a number")
        dec = Decimal(text)
    else:
        raise InvalidAmount(f"amount {value!r} of type {type(value).__name__} is not a number")
    if not dec.is_finite():
        raise InvalidAmount(f"amount {value!r} is not finite")
    return dec


def decimal_places(amount: Decimal) -> int:
    """Decimals ``amount`` needs: trailing zeros are not decimals (``1234.500`` needs 1, ``100`` and ``1E+2`` 0).

    Exact whatever the length (no ``normalize()``, which rounds to the context's 28 digits).
    """
    _, digits, exp = amount.as_tuple()
    if not isinstance(exp, int) or exp >= 0 or not any(digits):
        return 0
    places = -exp
    for d in reversed(digits):
        if d or not places:
            break
        places -= 1
    return places


def check_minor_units(amount: object, currency: str) -> None:
    """Refuse an amount with more decimals than its currency's minor unit allows; never round it.

    ``USD 1234.567`` or ``JPY 556.25`` is not an amount in that currency: rounding would book a different number
    and re-labelling would book another currency, so both are refused (:class:`InvalidAmount`, one line). Zero
    padding is not a decimal: ``USD 1234.5000`` (a NUMERIC(18, 4) column) is 1234.50 exactly and passes. This is
    the rule's one home; the ingest applies it to every money field of every row (see
    :func:`writeoffs.ingest.validate.validate_chunk`), vectorised, with the messages from here.
    """
    cur = check_currency(currency)
    dec = to_decimal(amount)  # floats refused: a float's binary noise is not the source's amount
    places, allowed = decimal_places(dec), MINOR_UNITS[cur]
    if places > allowed:
        shown = format(dec, "f").rstrip("0")  # only zero padding goes: a non-zero decimal follows the point
        raise InvalidAmount(f"{shown} has {places} decimal{'s' if places != 1 else ''}; {cur} allows {allowed}")


def check_max_amount(amount: object) -> None:
    """Refuse an amount whose absolute value is above :data:`MAX_AMOUNT` (:class:`InvalidAmount`, one line)."""
    dec = to_decimal(amount)
    if abs(dec) > MAX_AMOUNT:
        raise InvalidAmount(f"{format(dec, 'f')} is beyond the largest amount the ledger accepts ({MAX_AMOUNT})")


def round_money(value: object, currency: str) -> Decimal:
    """Quantise to the currency's minor unit with :data:`ROUNDING`."""
    return to_decimal(value).quantize(quantum(currency), rounding=ROUNDING)


def money_str(value: Decimal) -> str:
    """Decimal to a plain string for XCom/JSON (never a float)."""
    return format(value, "f")


def safe_decimal(value: object) -> Decimal | None:
    """Best-effort conversion for reports; returns None instead of raising."""
    try:
        return to_decimal(value)
    except (InvalidAmount, InvalidOperation):
        return None
