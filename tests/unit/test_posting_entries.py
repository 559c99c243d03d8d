"""Pure parts of posting: entry shapes per method, functional rounding, batch hash, skip reasons."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest

from writeoffs.approvals import batch_hash_of
from writeoffs.posting import _Context, build_entry, skip_reason

D = Decimal


def entry(amount: str, rate: str, currency: str = "USD", functional: str = "USD", debit: str = "6100"):
    return build_entry(
        key="wo:k",
        entity="US01",
        posting_date=date(2026, 11, 24),
        invoice_id=1,
        invoice_ref="INV-1",
        currency=currency,
        amount=D(amount),
        fx_rate=D(rate),
        functional_currency=functional,
        debit_account=debit,
        credit_account="1100",
        reason_code="bankruptcy",
        writeoff_id=7,
        policy_version="v1",
        description="d",
    )


@pytest.mark.parametrize(
    ("amount", "rate", "currency", "functional", "expected"),
    [
        ("45000.00", "1", "USD", "USD", D("45000.00")),
        ("100.01", "1.08333", "EUR", "USD", D("108.34")),  # 108.3438 -> half-up once
        ("0.05", "1.1", "EUR", "USD", D("0.06")),  # 0.055 -> 0.06 (half-up, not banker's)
        ("1000", "0.0067", "JPY", "EUR", D("6.70")),  # zero-decimal transaction currency
        ("12.345", "1", "KWD", "KWD", D("12.345")),  # three-decimal currency kept exact
    ],
)
def test_entry_balances_in_both_currencies(amount, rate, currency, functional, expected) -> None:
    e = entry(amount, rate, currency, functional)
    dr, cr = e.lines
    assert (dr.account, cr.account) == ("6100", "1100")
    assert dr.debit == cr.credit and dr.credit == cr.debit == 0
    assert dr.functional_debit == cr.functional_credit == expected
    assert (e.source_type, e.source_id, e.meta) == ("writeoff", "7", {"policy_version": "v1"})


def test_allowance_entry_debits_the_allowance() -> None:
    assert [ln.account for ln in entry("10", "1", debit="1190").lines] == ["1190", "1100"]


def test_batch_hash_is_order_independent_and_sensitive_to_each_field() -> None:
    items = [("INV-1", D("10.00"), "bankruptcy"), ("INV-2", "5", "small_balance")]
    base = batch_hash_of(items)
    assert base == batch_hash_of(list(reversed(items)))
    assert base == batch_hash_of([("INV-1", D("10"), "bankruptcy"), ("INV-2", D("5.0000"), "small_balance")])
    for changed in (
        [("INV-1", D("10.01"), "bankruptcy"), items[1]],
        [("INV-1", D("10.00"), "dispute_lost"), items[1]],
        [("INV-9", D("10.00"), "bankruptcy"), items[1]],
        items[:1],
    ):
        assert batch_hash_of(changed) != base


CTX = _Context(
    batch_id=1,
    batch_key="b",
    entity="US01",
    method="direct",
    functional_currency="USD",
    as_of=date(2026, 11, 24),
    posting_date=date(2026, 11, 26),
    ar_account="1100",
    allowance_account="1190",
    reason_accounts={},
    default_expense="6100",
    approval_ref="",
    actor="t",
)
OK = dict(
    entity_code="US01",
    currency="USD",
    invoice_currency="USD",
    invoice_status="open",
    on_hold=False,
    late_payment=False,
    asof_balance=None,
    open_balance=D("100"),
    amount=D("100"),
)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"invoice_status": "charged_off"}, None),
        ({"amount": D("40")}, None),  # partial write-off
        ({"invoice_status": "paid"}, "invoice status is 'paid' since approval"),
        ({"invoice_status": "written_off"}, "invoice status is 'written_off' since approval"),
        ({"on_hold": True}, "invoice or customer is on a dispute/payment-plan hold"),
        ({"late_payment": True}, "payment received after the as-of date 2026-11-24"),
        ({"asof_balance": D("120")}, "open balance changed since the as-of date (120 -> 100)"),
        ({"amount": D("100.01")}, "amount 100.01 exceeds the open balance 100"),
        ({"entity_code": "DE01"}, "invoice belongs to entity DE01, the batch to US01"),
        ({"currency": "EUR"}, "write-off currency EUR differs from invoice currency USD"),
    ],
)
def test_skip_reasons(change, reason) -> None:
    assert skip_reason(SimpleNamespace(**{**OK, **change}), CTX) == reason
