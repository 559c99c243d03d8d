"""Journal entries: frozen value objects that cannot exist unbalanced; corrections are mirror reversals."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest

from writeoffs.errors import InvalidAmount, UnbalancedEntry, UnknownCurrency
from writeoffs.journal import JournalEntry, JournalLine, imbalances

D = Decimal
DAY = date(2026, 11, 24)


def dr(account: str, amount: str, currency: str = "USD", **kw) -> JournalLine:
    return JournalLine(account=account, currency=currency, debit=D(amount), **kw)


def cr(account: str, amount: str, currency: str = "USD", **kw) -> JournalLine:
    return JournalLine(account=account, currency=currency, credit=D(amount), **kw)


def entry(*lines: JournalLine, key: str = "je-1") -> JournalEntry:
    return JournalEntry(key=key, entity="US01", posting_date=DAY, lines=lines)


# --- lines -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"debit": D("-1")}, InvalidAmount),
        ({"credit": D("-0.01")}, InvalidAmount),
        ({}, InvalidAmount),  # both sides zero
        ({"debit": D("1"), "credit": D("1")}, InvalidAmount),  # both sides set
        ({"debit": D("0.004")}, InvalidAmount),  # rounds to zero in USD: nothing left on either side
        ({"debit": 1.5}, InvalidAmount),  # float
        ({"debit": "NaN"}, InvalidAmount),
        ({"debit": D("1"), "currency": "XXX"}, UnknownCurrency),
        ({"debit": D("1"), "functional_currency": "EUR"}, InvalidAmount),  # FX line without functional amounts
        ({"debit": D("1"), "functional_currency": "EUR", "functional_debit": 1.1}, InvalidAmount),
        # a debit must stay a debit in functional currency, and functional amounts are never negative
        ({"debit": D("1"), "functional_currency": "EUR", "functional_credit": D("1.1")}, InvalidAmount),
        (
            {"debit": D("1"), "functional_currency": "EUR", "functional_debit": D("1"), "functional_credit": D("1")},
            InvalidAmount,
        ),
        ({"credit": D("1"), "functional_currency": "EUR", "functional_credit": D("-1.1")}, InvalidAmount),
        ({"debit": D("1"), "functional_debit": D("-1")}, InvalidAmount),
    ],
)
def test_invalid_lines_refused(kwargs, error):
    kwargs = {"account": "1100", "currency": "USD", **kwargs}
    with pytest.raises(error):
        JournalLine(**kwargs)


def test_line_quantises_and_defaults_functional_to_transaction_amounts():
    ln = JournalLine(account="6100", currency="jpy", debit=D("1000.4"))
    assert (ln.currency, ln.debit, ln.credit) == ("JPY", D("1000"), D("0"))
    assert (ln.functional_currency, ln.functional_debit, ln.functional_credit) == ("JPY", D("1000"), D("0"))
    assert ln.signed == D("1000")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ln.debit = D("1")  # type: ignore[misc]


def test_fx_line_needs_only_the_functional_amount_of_its_own_side():
    ln = JournalLine(
        account="1100", currency="EUR", credit=D("100"), functional_currency="usd", functional_credit=D("108.154")
    )
    assert (ln.functional_currency, ln.functional_debit, ln.functional_credit) == ("USD", D("0.00"), D("108.15"))


# --- entries -----------------------------------------------------------------------------------------------------


def test_worked_example_balances():
    je = entry(dr("6100", "45000.00"), cr("1100", "45000.00"))
    assert je.total_debit("USD") == D("45000.00")
    assert imbalances(je.lines) == {}


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ((dr("6100", "45000.00"), cr("1100", "44999.99")), "USD off by 0.01"),
        ((dr("6100", "100"), cr("1100", "50"), cr("1190", "49.99")), "USD off by 0.01"),
        # balanced in total across currencies is not balanced: each currency must balance on its own
        (
            (
                dr("6100", "100", "EUR", functional_currency="USD", functional_debit=D("110")),
                cr("1100", "100", "USD", functional_currency="USD"),
                cr("1100", "10", "USD"),
            ),
            "EUR off by 100",
        ),
        # balanced per transaction currency, off by one cent in the entity's functional currency
        (
            (
                dr("6100", "100", "EUR", functional_currency="USD", functional_debit=D("110.00")),
                cr("1100", "100", "EUR", functional_currency="USD", functional_credit=D("109.99")),
            ),
            "functional:USD off by 0.01",
        ),
        ((dr("6100", "1", "KWD"), cr("1100", "1.001", "KWD")), "KWD off by -0.001"),
    ],
)
def test_unbalanced_entry_cannot_be_built(lines, fragment):
    with pytest.raises(UnbalancedEntry, match="je-1") as exc:
        entry(*lines)
    assert fragment in str(exc.value)


def test_multicurrency_entry_balancing_per_currency_and_functional_is_accepted():
    je = entry(
        dr("6100", "100", "EUR", functional_currency="USD", functional_debit=D("108.15")),
        cr("1100", "100", "EUR", functional_currency="USD", functional_credit=D("108.15")),
        dr("6100", "5000", "JPY", functional_currency="USD", functional_debit=D("33.05")),
        cr("1100", "5000", "JPY", functional_currency="USD", functional_credit=D("33.05")),
    )
    assert len(je.lines) == 4


def test_decimal_sums_are_exact():
    # 0.10 + 0.20 == 0.30 exactly; with floats this entry would be "unbalanced" by 5.5e-17.
    je = entry(dr("6100", "0.10"), dr("6100", "0.20"), cr("1100", "0.30"))
    assert je.total_debit("USD") == D("0.30")


@pytest.mark.parametrize("lines", [(), (dr("6100", "1"),)])
def test_entry_needs_at_least_two_lines(lines):
    with pytest.raises(UnbalancedEntry, match="at least two lines"):
        entry(*lines)


def test_entry_needs_an_idempotency_key():
    with pytest.raises(UnbalancedEntry, match="idempotency key"):
        entry(dr("6100", "1"), cr("1100", "1"), key="")


def test_entry_is_frozen_and_lines_cannot_be_changed_afterwards():
    source = [dr("6100", "10"), cr("1100", "10")]
    je = JournalEntry(key="je-1", entity="US01", posting_date=DAY, lines=source)  # type: ignore[arg-type]
    assert isinstance(je.lines, tuple)
    source.append(dr("6100", "1000"))  # mutating the caller's list must not unbalance the entry
    assert len(je.lines) == 2
    for attr, value in [("key", "other"), ("lines", ()), ("posting_date", date(2020, 1, 1)), ("entity", "X")]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(je, attr, value)


# --- reversals ---------------------------------------------------------------------------------------------------


REVERSIBLE = [
    (dr("6100", "45000.00", invoice_id=7, memo="write-off"), cr("1100", "45000.00", invoice_id=7)),
    (dr("6100", "60"), dr("6130", "40"), cr("1100", "100")),
    (
        dr("6100", "100", "EUR", functional_currency="USD", functional_debit=D("108.15")),
        cr("1100", "100", "EUR", functional_currency="USD", functional_credit=D("108.15")),
    ),
    (dr("1000", "12.345", "KWD"), cr("4900", "12.345", "KWD")),
]


@pytest.mark.parametrize("lines", REVERSIBLE)
def test_reversal_mirrors_every_line_and_nets_to_zero(lines):
    original = entry(*lines)
    rev = original.reversal("je-1-rev", date(2026, 12, 1))
    assert rev.reverses_key == "je-1"
    assert rev.source_type == "reversal"
    assert rev.key == "je-1-rev" and rev.posting_date == date(2026, 12, 1) and rev.entity == original.entity
    assert "je-1" in rev.description
    assert len(rev.lines) == len(original.lines)
    assert imbalances(rev.lines) == {}
    for o, r in zip(original.lines, rev.lines, strict=True):
        assert (r.account, r.currency, r.functional_currency, r.invoice_id) == (
            o.account,
            o.currency,
            o.functional_currency,
            o.invoice_id,
        )
        assert (r.debit, r.credit) == (o.credit, o.debit)
        assert (r.functional_debit, r.functional_credit) == (o.functional_credit, o.functional_debit)
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for ln in original.lines + rev.lines:
        net[(ln.account, ln.currency)] += ln.signed
    assert set(net.values()) == {D(0)}


def test_reversal_of_reversal_restores_the_original_amounts():
    original = entry(*REVERSIBLE[1])
    back = original.reversal("r1", DAY).reversal("r2", DAY)
    assert [(ln.account, ln.debit, ln.credit) for ln in back.lines] == [
        (ln.account, ln.debit, ln.credit) for ln in original.lines
    ]
    assert back.reverses_key == "r1"
