"""Pure parts of posting: entry shapes per method, functional rounding, batch hash, skip reasons."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from writeoffs.accounting import entries
from writeoffs.accounting.chart import DEFAULT_REASON_ACCOUNTS, Accounts
from writeoffs.approvals import batch_hash_of
from writeoffs.policy import load_policy
from writeoffs.posting import _Context, _skips, skip_reason

D = Decimal


ROLES = {"ar_control": "1100", "allowance": "1190", "bad_debt_expense": "6100", "cash": "1000"}


def accts(method: str = "direct", functional: str = "USD") -> Accounts:
    return Accounts("US01", method, functional, ROLES, {**DEFAULT_REASON_ACCOUNTS, "bankruptcy": "6100"})


def entry(amount: str, rate: str, currency: str = "USD", functional: str = "USD", method: str = "direct"):
    return entries.writeoff(
        accts(method, functional),
        writeoff_key="wo:k",
        writeoff_id=7,
        posting_date=date(2026, 11, 24),
        invoice_id=1,
        invoice_ref="INV-1",
        currency=currency,
        amount=D(amount),
        fx_rate=D(rate),
        reason_code="bankruptcy",
        policy_version="v1",
        batch_key="b",
        approval_ref="a",
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
    assert (e.key, e.source_type, e.source_id, e.meta) == ("wo:k", "writeoff", "7", {"policy_version": "v1"})


def test_allowance_entry_debits_the_allowance() -> None:
    assert [ln.account for ln in entry("10", "1", method="allowance").lines] == ["1190", "1100"]


def test_unmapped_role_or_reason_is_refused() -> None:
    from writeoffs.errors import LedgerError

    bare = Accounts("US01", "direct", "USD", {"ar_control": "1100"}, {})
    with pytest.raises(LedgerError, match="reason 'bankruptcy' has no expense account"):
        bare.writeoff_debit("bankruptcy")
    with pytest.raises(LedgerError, match="no account for role 'unapplied_cash'"):
        bare.role("unapplied_cash")


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
    accts=accts(),
    approval_ref="",
    actor="t",
    policy=load_policy(),
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
    invoice_amount=D("100"),
    invoice_id=1,
    created_at=datetime(2026, 11, 24, 6, 0),
    other_posted_at=None,
    parent_id=None,
    segment="default",
    transferred=False,
    parent_paid=False,
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
        (
            {"other_posted_at": datetime(2026, 11, 25, 9, 0)},
            "another write-off of this invoice was posted since selection",
        ),
        ({"other_posted_at": datetime(2026, 11, 23, 9, 0)}, None),  # posted before selection: selection saw it
        (
            {"parent_id": 5, "transferred": True, "parent_paid": True, "amount": D("100")},
            "child invoice whose balance went to the parent, and the parent has paid part of it",
        ),
        ({"parent_id": 5, "transferred": True, "parent_paid": False}, None),
        (
            {"parent_id": 5, "amount": D("40")},
            "child-account invoices are written off for their full invoice amount only",
        ),
    ],
)
def test_skip_reasons(change, reason) -> None:
    assert skip_reason(SimpleNamespace(**{**OK, **change}), CTX) == reason


def test_two_items_of_one_invoice_in_one_posting_post_once() -> None:
    rows = [SimpleNamespace(**{**OK, "amount": D("40")}), SimpleNamespace(**{**OK, "amount": D("40")})]
    assert [reason for _, reason in _skips(rows, CTX)] == ["another write-off of this invoice is in the same posting"]
