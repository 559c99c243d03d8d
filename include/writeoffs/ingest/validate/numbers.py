"""Numbers: separators and signs read in the source's style, rates and money amounts checked without rounding."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from writeoffs.errors import InputError
from writeoffs.ingest.fields import Field
from writeoffs.ingest.validate.model import MONEY_TYPE, RATE_TYPE, _Rows
from writeoffs.money import DB_SCALE, MAX_AMOUNT, MINOR_UNITS, check_max_amount, check_minor_units

if TYPE_CHECKING:
    from writeoffs.ingest.config import SourceConfig


#: A plain decimal number (no exponent, no NaN, a digit on both sides of the point).
_NUMBER_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
#: NUMERIC(20, 4) holds 16 integer digits; MAX_AMOUNT (checked on the value) is below that.
_MONEY_INT_DIGITS = 16
_RATE_RE = r"^[+-]?[0-9]{1,10}(\.[0-9]{1,10})?$"


def _plain_number_text(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """The number as text with ``.`` as the decimal point and no grouping.

    Grouping must sit between groups of three digits before the decimal separator: otherwise ``45.000,00`` read
    with US separators would silently become 45.00000, i.e. 45, a 1000x error, now that zero padding is not
    counted as decimals.
    """
    text = _signed_text(col, present, f, cfg, rows)
    if cfg.thousands_sep:
        sep, point = re.escape(cfg.thousands_sep), re.escape(cfg.decimal_sep)
        grouped = f"^[+-]?([0-9]+|[0-9]{{1,3}}({sep}[0-9]{{3}})+)({point}[0-9]+)?$"
        rows.flag(
            pc.and_kleene(
                pc.match_substring(text, cfg.thousands_sep),
                pc.invert(pc.fill_null(pc.match_substring_regex(text, grouped), False)),
            ),
            f.name,
            "not_a_number",
            f"{f.name}: thousands separator {cfg.thousands_sep!r} is not between groups of three digits",
        )
        text = pc.replace_substring(text, cfg.thousands_sep, "")
    if cfg.decimal_sep != ".":
        dotted = pc.match_substring(text, ".")
        rows.flag(
            pc.and_kleene(present, dotted),
            f.name,
            "not_a_number",
            f"{f.name} has '.' but the decimal separator is {cfg.decimal_sep!r}",
        )
        text = pc.replace_substring(text, cfg.decimal_sep, ".")
    return text


#: Per negative style: the shapes a value may have as far as signs go (a sign or parenthesis anywhere else is
#: ambiguous), and for the styles other than a leading minus, the shape of a negative value and where its digits are.
_SIGN_SHAPES = {
    "leading_minus": r"^[+-]?[^()+-]*$",
    "parentheses": r"^(\([^()+-]*\)|[^()+-]*)$",
    "trailing_minus": r"^[^()+-]*-?$",
}
_NEGATIVE: dict[str, tuple[str, int, int]] = {
    "parentheses": (r"^\([^()+-]*\)$", 1, -1),
    "trailing_minus": (r"^[^()+-]*-$", 0, -1),
}
#: Digits and the grouping/decimal separators a source may use (config.THOUSANDS_SEPARATORS), nothing else.
_NUMBERISH = "^[0-9.,' \u00a0\u202f]*[0-9][0-9.,' \u00a0\u202f]*$"
_SIGN_EXAMPLE = {"leading_minus": "-12.34", "parentheses": "(12.34)", "trailing_minus": "12.34-"}


def _ambiguous(values: pa.Array, style: str) -> pa.Array:
    """Signs not in ``style`` on what would otherwise be a number ("n/a-1" is not a number, not an ambiguous one)."""
    numberish = pc.match_substring_regex(pc.replace_substring_regex(values, r"[()+-]", ""), _NUMBERISH)
    return pc.and_kleene(pc.invert(pc.match_substring_regex(values, _SIGN_SHAPES[style])), numberish)


def _sign_message(name: str, style: str) -> str:
    return f"{name}: sign not written as the source's negative_style {style} ({_SIGN_EXAMPLE[style]})"


def _signed_text(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """The value with its sign as a leading ``-``, read in the source's ``negative_style`` (one home for signs).

    A sign or parenthesis written any other way (``(12.34)`` in a leading-minus export, ``-12.34`` in a
    parentheses export, ``-(12.34)``, ``12.34-``) is ``ambiguous_sign``: an export that mixes styles cannot be read
    by guessing. With a leading minus (the default) nothing is checked here: every other sign form fails the number
    shape, and :func:`_relabel_signs` names those few rows afterwards, so clean data pays nothing.
    """
    style = cfg.negative_style
    if style not in _NEGATIVE:
        return col
    rows.flag(_ambiguous(col, style), f.name, "ambiguous_sign", _sign_message(f.name, style))
    pattern, start, stop = _NEGATIVE[style]
    is_negative = pc.fill_null(pc.match_substring_regex(col, pattern), False)
    body = pc.utf8_slice_codeunits(col, start, stop)
    return pc.if_else(is_negative, pc.binary_join_element_wise("-", body, ""), col)


def _relabel_signs(col: pa.Array, name: str, cfg: SourceConfig, rows: _Rows) -> None:
    """Leading-minus sources: rows of ``name`` refused as ``not_a_number`` whose value is a number with its sign
    written another way are ``ambiguous_sign`` (only the refused rows are looked at)."""
    if cfg.negative_style in _NEGATIVE or name not in rows.any_field:
        return
    idx = np.flatnonzero(rows.any_field[name])
    idx = np.array([i for i in idx if rows.field[i] == name and rows.reason[i] == "not_a_number"], dtype=np.int64)
    if not len(idx):
        return
    hit = pc.fill_null(_ambiguous(col.take(pa.array(idx)), cfg.negative_style), False).to_numpy(zero_copy_only=False)
    for i in idx[hit]:
        rows.reason[i] = "ambiguous_sign"
        rows.message[i] = _sign_message(name, cfg.negative_style)


def _parse_number(col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows) -> pa.Array:
    """A rate (``fx_rate``): at most 10 integer digits and 10 decimals; more is refused rather than rounded."""
    text = _plain_number_text(col, present, f, cfg, rows)
    ok = pc.match_substring_regex(text, _RATE_RE)
    bad = pc.and_kleene(present, pc.invert(pc.fill_null(ok, False)))
    rows.flag(bad, f.name, "not_a_number", f"{f.name} is not a decimal number (at most 10 decimals)")
    _relabel_signs(col, f.name, cfg, rows)
    good = pc.fill_null(ok, False)
    value = pc.cast(pc.if_else(good, text, pa.scalar(None, pa.string())), RATE_TYPE)
    rows.flag(pc.less(value, pa.scalar(0, RATE_TYPE)), f.name, "invalid_fx_rate", f"{f.name} is negative")
    return value


def _parse_money(
    col: pa.Array, present: pa.Array, f: Field, cfg: SourceConfig, rows: _Rows, currency: pa.Array
) -> pa.Array:
    """An amount in the row's ``currency``: a plain number within MAX_AMOUNT and the currency's minor unit.

    Decimals are counted on the text without zero padding (``1234.5000`` is 1234.5: a NUMERIC(18, 4) source
    column or a Parquet decimal prints zeros that are not decimals), so the verdict is the value's, exactly as
    :func:`writeoffs.money.check_minor_units` decides it on a Decimal; nothing is rounded. A float handed over by
    a source reaches this point as its shortest round-trip text (:func:`writeoffs.ingest.sources.base._text`), so binary
    noise (``0.30000000000000004``) shows up as decimals and is refused, never rounded away.
    """
    text = _plain_number_text(col, present, f, cfg, rows)
    shape = pc.fill_null(pc.match_substring_regex(text, _NUMBER_RE), False)
    rows.flag(pc.and_kleene(present, pc.invert(shape)), f.name, "not_a_number", f"{f.name} is not a decimal number")
    _relabel_signs(col, f.name, cfg, rows)
    # Zero padding off (1234.5000 -> 1234.5, 100.00 -> 100), then decimals and integer digits counted on the text:
    # string kernels only, no regex capture (this runs on every money field of every row).
    number = pc.if_else(shape, text, pa.scalar(None, pa.string()))
    point = pc.find_substring(number, ".")
    has_point = pc.greater_equal(point, 0)
    canonical = pc.if_else(has_point, pc.utf8_rtrim(pc.utf8_rtrim(number, "0"), "."), number)
    places = pc.fill_null(
        pc.if_else(has_point, pc.max_element_wise(pc.subtract(pc.utf8_length(canonical), pc.add(point, 1)), 0), 0), 0
    )
    body = pc.utf8_ltrim(pc.utf8_ltrim(canonical, "+-"), "0")  # integer digits that count: no sign, no leading 0
    body_point = pc.find_substring(body, ".")
    int_digits = pc.if_else(pc.greater_equal(body_point, 0), body_point, pc.utf8_length(body))
    fits = pc.and_kleene(
        shape, pc.and_kleene(pc.less_equal(int_digits, _MONEY_INT_DIGITS), pc.less_equal(places, DB_SCALE))
    )
    value = pc.cast(pc.if_else(fits, canonical, pa.scalar(None, pa.string())), MONEY_TYPE)

    def messages(rule: Any, *args: pa.Array) -> Callable[[np.ndarray], list[str]]:
        def build(idx: np.ndarray) -> list[str]:
            take = pa.array(idx)
            out = []
            for vals in zip(*(a.take(take).to_pylist() for a in (canonical, *args)), strict=True):
                try:
                    rule(Decimal(vals[0]), *vals[1:])
                except InputError as exc:
                    out.append(f"{f.name} {exc.reason}")
                    continue
                raise RuntimeError(f"{f.name} {vals}: the ingest and writeoffs.money disagree (a bug)")
            return out

        return build

    too_large = pc.and_kleene(
        shape,
        pc.or_kleene(
            pc.greater(int_digits, _MONEY_INT_DIGITS),
            pc.greater(pc.abs(value), pa.scalar(MAX_AMOUNT, MONEY_TYPE)),
        ),
    )
    rows.flag(too_large, f.name, "amount_too_large", messages(check_max_amount))
    units = pc.index_in(currency, value_set=pa.array(list(MINOR_UNITS), pa.string()))
    allowed = pc.take(pa.array(list(MINOR_UNITS.values()), pa.int32()), units)
    # An unknown or missing currency already failed its own field; DB_SCALE keeps even such a row from being cut.
    too_many = pc.and_kleene(shape, pc.greater(places, pc.fill_null(allowed, DB_SCALE)))
    rows.flag(too_many, f.name, "too_many_decimals", messages(check_minor_units, currency))
    rows.flag(pc.less(value, pa.scalar(0, MONEY_TYPE)), f.name, "negative_amount", f"{f.name} is negative")
    return value
