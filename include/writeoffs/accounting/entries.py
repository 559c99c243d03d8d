"""One function per journal entry type. Every entry that reaches the GL is built here.

| entry                      | lines                                                                    |
|----------------------------|--------------------------------------------------------------------------|
| write-off, direct          | Dr Bad Debt Expense (reason's account) / Cr AR control                   |
| write-off, allowance       | Dr Allowance for Doubtful Accounts / Cr AR control                       |
| recovery, direct           | Dr Cash / Cr Bad Debt Recovery (income)                                  |
| recovery, allowance        | Dr AR / Cr Allowance (reinstate), Dr Cash / Cr AR (collect): one entry   |
| unapplied cash             | Dr Cash / Cr Unapplied Cash (liability: to apply or refund)              |
| reversal                   | the original's lines mirrored                                            |
| allowance true-up / funding| Dr Bad Debt Expense / Cr Allowance (increase), the reverse (release)     |
| AR sync                    | Dr AR control / Cr Suspense (AR grew), the reverse (AR shrank)           |
| opening balance            | Dr AR control / Cr Suspense                                              |

Amounts are quantised to the currency's minor unit, half-up (:data:`writeoffs.money.ROUNDING`); the functional
amount of a document amount is :func:`functional` (the invoice's booked rate, rounded once from the rounded
transaction amount). An entry cannot be built unbalanced (:class:`writeoffs.journal.JournalEntry`).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from writeoffs.accounting import keys
from writeoffs.accounting.chart import Accounts, Role
from writeoffs.journal import JournalEntry, JournalLine
from writeoffs.money import round_money, to_decimal

ZERO = Decimal(0)


def functional(amount: Decimal, fx_rate: object, functional_currency: str) -> Decimal:
    """Functional-currency amount of a (rounded) document amount at the booked rate, rounded half-up once."""
    return round_money(amount * to_decimal(fx_rate), functional_currency)


def _document_amounts(accts: Accounts, currency: str, amount: Decimal, fx_rate: object) -> tuple[Decimal, Decimal]:
    """A document amount rounded to its currency, and its functional amount (:func:`functional` of the rounded one)."""
    amt = round_money(amount, currency)
    return amt, functional(amt, fx_rate, accts.functional_currency)


def _pair(
    debit_account: str,
    credit_account: str,
    currency: str,
    amount: Decimal,
    functional_currency: str,
    functional_amount: Decimal,
    *,
    invoice_id: int | None = None,
    memo: str = "",
) -> tuple[JournalLine, JournalLine]:
    return (
        JournalLine(
            account=debit_account,
            currency=currency,
            debit=amount,
            functional_currency=functional_currency,
            functional_debit=functional_amount,
            functional_credit=ZERO,
            invoice_id=invoice_id,
            memo=memo,
        ),
        JournalLine(
            account=credit_account,
            currency=currency,
            credit=amount,
            functional_currency=functional_currency,
            functional_debit=ZERO,
            functional_credit=functional_amount,
            invoice_id=invoice_id,
            memo=memo,
        ),
    )


def writeoff_memo(invoice_ref: str, reason_code: str) -> str:
    return f"write-off {invoice_ref} {reason_code}"


def writeoff_description(
    invoice_ref: str, reason_code: str, method: str, batch_key: str, approval_ref: str, policy_version: str
) -> str:
    return (
        f"Write-off {invoice_ref} ({reason_code}, {method} method); batch {batch_key}; {approval_ref}; "
        f"policy {policy_version}"
    )


def writeoff(
    accts: Accounts,
    *,
    writeoff_key: str,
    writeoff_id: int,
    posting_date: date,
    invoice_id: int,
    invoice_ref: str,
    currency: str,
    amount: Decimal,
    fx_rate: Decimal,
    reason_code: str,
    policy_version: str,
    batch_key: str,
    approval_ref: str,
) -> JournalEntry:
    """Direct method: Dr the reason's expense account; allowance method: Dr Allowance. Cr AR control."""
    amt, famt = _document_amounts(accts, currency, amount, fx_rate)
    return JournalEntry(
        key=keys.writeoff_entry(writeoff_key),
        entity=accts.entity,
        posting_date=posting_date,
        lines=_pair(
            accts.writeoff_debit(reason_code),
            accts.role(Role.AR_CONTROL),
            currency,
            amt,
            accts.functional_currency,
            famt,
            invoice_id=invoice_id,
            memo=writeoff_memo(invoice_ref, reason_code),
        ),
        description=writeoff_description(
            invoice_ref, reason_code, accts.method, batch_key, approval_ref, policy_version
        ),
        source_type="writeoff",
        source_id=str(writeoff_id),
        meta={"policy_version": policy_version},
    )


def recovery(
    accts: Accounts,
    *,
    posting_date: date,
    invoice_id: int,
    invoice_ref: str,
    currency: str,
    amount: Decimal,
    fx_rate: Decimal,
    payment_ref: str,
) -> JournalEntry:
    """Cash received on a written-off amount. Allowance method: reinstate then collect, in one four-line entry."""
    amt, famt = _document_amounts(accts, currency, amount, fx_rate)
    memo = f"recovery {invoice_ref} payment {payment_ref}"
    fc = accts.functional_currency
    cash = accts.role(Role.CASH)
    if accts.method == "allowance":
        ar = accts.role(Role.AR_CONTROL)
        reinstate = _pair(ar, accts.role(Role.ALLOWANCE), currency, amt, fc, famt, invoice_id=invoice_id, memo=memo)
        collect = _pair(cash, ar, currency, amt, fc, famt, invoice_id=invoice_id, memo=memo)
        lines = (*reinstate, *collect)
    else:
        lines = _pair(cash, accts.role(Role.RECOVERY_INCOME), currency, amt, fc, famt, invoice_id=invoice_id, memo=memo)
    return JournalEntry(
        key=keys.recovery(accts.entity, payment_ref, invoice_id),
        entity=accts.entity,
        posting_date=posting_date,
        lines=lines,
        description=f"Recovery of written-off {invoice_ref} ({accts.method} method), payment {payment_ref}",
        source_type="recovery",
        source_id=str(invoice_id),
    )


def unapplied_cash(
    accts: Accounts,
    *,
    posting_date: date,
    invoice_id: int,
    invoice_ref: str,
    currency: str,
    amount: Decimal,
    fx_rate: Decimal,
    payment_ref: str,
) -> JournalEntry:
    """Cash received that cannot be applied (above what remains written off): Dr Cash / Cr Unapplied Cash."""
    amt, famt = _document_amounts(accts, currency, amount, fx_rate)
    return JournalEntry(
        key=keys.unapplied_cash(accts.entity, payment_ref, invoice_id),
        entity=accts.entity,
        posting_date=posting_date,
        lines=_pair(
            accts.role(Role.CASH),
            accts.role(Role.UNAPPLIED_CASH),
            currency,
            amt,
            accts.functional_currency,
            famt,
            invoice_id=invoice_id,
            memo=f"unapplied cash {invoice_ref} payment {payment_ref}",
        ),
        description=(
            f"Unapplied cash: payment {payment_ref} on {invoice_ref} above what remains written off (to apply or "
            "refund)"
        ),
        source_type="unapplied_cash",
        source_id=str(invoice_id),
    )


def reversal(
    original: JournalEntry,
    *,
    original_entry_id: int,
    posting_date: date,
    description: str,
    source_id: str,
    policy_version: str | None,
) -> JournalEntry:
    """The mirror of ``original``: every debit becomes a credit and vice versa. Nothing is ever edited."""
    mirror = original.reversal(key=keys.reversal(original_entry_id), posting_date=posting_date)
    return JournalEntry(
        key=mirror.key,
        entity=mirror.entity,
        posting_date=posting_date,
        lines=mirror.lines,
        description=description[:400],
        source_type="reversal",
        source_id=source_id,
        reverses_key=original.key,
        meta={"policy_version": policy_version},
    )


def allowance_adjustment(
    accts: Accounts,
    *,
    key: str,
    posting_date: date,
    currency: str,
    change: Decimal,
    functional_change: Decimal,
    description: str,
    memo: str,
    source_type: str = "allowance",
    source_id: str | None = None,
    policy_version: str | None = None,
) -> JournalEntry:
    """Move the allowance by ``change`` (> 0: Dr Bad Debt Expense / Cr Allowance; < 0: the release).

    ``functional_change`` is the (non-negative) functional amount of the same movement.
    """
    amt = round_money(abs(change), currency)
    expense, allowance = accts.role(Role.BAD_DEBT_EXPENSE), accts.role(Role.ALLOWANCE)
    debit, credit = (expense, allowance) if change > 0 else (allowance, expense)
    return JournalEntry(
        key=key,
        entity=accts.entity,
        posting_date=posting_date,
        lines=_pair(debit, credit, currency, amt, accts.functional_currency, functional_change, memo=memo),
        description=description[:400],
        source_type=source_type,
        source_id=source_id,
        meta={"policy_version": policy_version},
    )


def ar_sync(
    accts: Accounts,
    *,
    source: str,
    as_of: date,
    load_no: int,
    currency: str,
    change: Decimal,
    functional_change: Decimal,
) -> JournalEntry:
    """Net change of sub-ledger open AR (> 0: Dr AR / Cr Suspense; < 0: the reverse), both amounts signed alike."""
    amt = round_money(abs(change), currency)
    famt = round_money(abs(functional_change), accts.functional_currency)
    ar, suspense = accts.role(Role.AR_CONTROL), accts.role(Role.SUSPENSE)
    debit, credit = (ar, suspense) if change > 0 else (suspense, ar)
    return JournalEntry(
        key=keys.ar_sync(source, as_of, accts.entity, currency, load_no),
        entity=accts.entity,
        posting_date=as_of,
        lines=_pair(debit, credit, currency, amt, accts.functional_currency, famt, memo=f"AR sync {source}"),
        description=f"AR sub-ledger sync from {source} as of {as_of} (load {load_no})",
        source_type="ar_sync",
        source_id=f"{source}:{as_of.isoformat()}",
    )


def opening_balance(
    accts: Accounts,
    *,
    as_of: date,
    currency: str,
    amount: Decimal,
    functional_amount: Decimal,
    source_id: str,
    memo: str,
    description: str,
) -> JournalEntry:
    """Opening AR: Dr AR control / Cr Suspense."""
    return JournalEntry(
        key=keys.opening_balance(accts.entity, currency, as_of),
        entity=accts.entity,
        posting_date=as_of,
        lines=_pair(
            accts.role(Role.AR_CONTROL),
            accts.role(Role.SUSPENSE),
            currency,
            round_money(amount, currency),
            accts.functional_currency,
            round_money(functional_amount, accts.functional_currency),
            memo=memo,
        ),
        description=description,
        source_type="opening_balance",
        source_id=source_id,
    )
