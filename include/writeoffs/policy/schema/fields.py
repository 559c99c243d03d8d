"""The reason catalogue and the field types the policy models share (money, per-currency amounts)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from writeoffs.accounting.chart import DEFAULT_REASON_ACCOUNTS as _CORE_REASON_ACCOUNTS
from writeoffs.errors import InvalidAmount, UnknownCurrency
from writeoffs.money import check_currency, to_decimal


class Reason(StrEnum):
    """The fixed reason catalogue. Not user-extensible on purpose: reports and GL mapping rely on a closed set."""

    UNCOLLECTIBLE = "uncollectible_after_collections"
    BANKRUPTCY = "bankruptcy"
    DISSOLVED = "customer_dissolved"
    SMALL_BALANCE = "small_balance"
    SETTLEMENT = "settlement_remainder"
    DISPUTE_LOST = "dispute_lost"
    STATUTE = "statute_expired"


#: Default GL expense account per reason: the accounting core's map (one home), keyed by the enum here.
DEFAULT_REASON_ACCOUNTS: dict[str, str] = {Reason(k): v for k, v in _CORE_REASON_ACCOUNTS.items()}


def _money(value: object) -> Decimal:
    try:
        dec = to_decimal(value)
    except InvalidAmount as exc:
        # YAML reads 50.00 as a float; money is never a float, so ask for a quoted string instead of guessing.
        raise ValueError(f"{exc.reason} (write amounts as quoted strings in YAML, e.g. '50.00')") from None
    if dec < 0:
        raise ValueError(f"amount {value!r} must not be negative")
    return dec


Money = Annotated[Decimal, BeforeValidator(_money)]


def _currency_map(value: object) -> object:
    if not isinstance(value, Mapping):
        return value
    out = {}
    for k, v in value.items():
        try:
            out[check_currency(str(k))] = v
        except UnknownCurrency as exc:
            raise ValueError(exc.reason) from None
    return out


CurrencyAmounts = Annotated[dict[str, Money], BeforeValidator(_currency_map)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
