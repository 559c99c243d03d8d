"""Recovery: money received on an amount already written off.

- direct method:    Dr Cash / Cr Bad Debt Recovery (income)
- allowance method: reinstate, then collect, in ONE balanced entry of four lines (so the recovery row links to a
  single entry): Dr AR / Cr Allowance, then Dr Cash / Cr AR. The AR lines net to zero, so the invoice's open
  balance does not move, exactly as in the sub-ledger.

A recovery never exceeds what was written off on the invoice minus what was already recovered
(:class:`AmountExceedsBalance`), and is never dated before the write-off it recovers (cash dated earlier is booked
on the write-off date). Entries are built by :func:`writeoffs.accounting.entries.recovery`.

Functional amounts use the invoice's booked ``fx_rate``: realised FX gains or
losses on late cash are out of scope here (the cash account is then translated at the booked rate).

Idempotent per ``rec:<entity>:<payment_ref>:<invoice_id>``: booking the same payment on the same invoice twice
returns the first booking (and refuses if the amount differs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Row, insert, select, update

from writeoffs import audit, ledger, subledger
from writeoffs.accounting import entries, keys
from writeoffs.accounting.chart import Accounts, resolve_accounts
from writeoffs.accounting.status import check as check_status
from writeoffs.db.locks import locked
from writeoffs.db.schema import invoices, payments, recoveries
from writeoffs.errors import AmountExceedsBalance, InvalidAmount, LedgerError
from writeoffs.money import money_str, round_money, to_decimal


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    recovery_id: int
    journal_entry_id: int
    invoice_ref: str
    amount: Decimal
    currency: str
    recovered_total: Decimal
    invoice_status: str
    replayed: bool = False


def recovery_key(entity: str, payment_ref: str, invoice_id: int) -> str:
    return keys.recovery(entity, payment_ref, invoice_id)


def book_recovery(
    conn: Connection,
    invoice_id: int,
    amount: object,
    recovery_date: date,
    payment_ref: str,
    actor: str,
) -> RecoveryResult:
    """Book a recovery in the caller's transaction; see the module docstring for the entries."""
    inv = _locked_invoice(conn, invoice_id)
    amt = round_money(to_decimal(amount), inv.currency)
    if amt <= 0:
        raise InvalidAmount(f"recovery on {inv.invoice_ref}: amount must be positive, got {amount}")
    key = recovery_key(inv.entity_code, payment_ref, invoice_id)

    prior = conn.execute(select(recoveries).where(recoveries.c.idempotency_key == key)).first()
    if prior is not None:
        return _replayed(inv, prior, amt, payment_ref)

    _check_recoverable(inv, amt)
    if inv.written_off_date is not None and recovery_date < inv.written_off_date:
        # Cash dated before the write-off it would recover is not a recovery of it: a recovery can never precede
        # the write-off (an accounting rule). Booked on the write-off date instead, a new entry into an open period.
        recovery_date = inv.written_off_date
    accts = resolve_accounts(conn, inv.entity_code)
    entry_id = _post_entry(conn, inv, accts, amt, recovery_date, payment_ref, key, actor)
    recovery_id, total, status = _record(conn, inv, amt, recovery_date, payment_ref, key, entry_id)
    audit.append(
        conn,
        actor=actor,
        action="recovery.booked",
        object_type="invoice",
        object_id=inv.id,
        details={
            "invoice_ref": inv.invoice_ref,
            "amount": amt,
            "currency": inv.currency,
            "payment_ref": payment_ref,
            "recovery_date": recovery_date,
            "journal_entry_id": entry_id,
            "recovered_total": total,
            "method": accts.method,
        },
    )
    return RecoveryResult(recovery_id, entry_id, inv.invoice_ref, amt, inv.currency, total, status)


def _locked_invoice(conn: Connection, invoice_id: int) -> Row:
    """The invoice, locked against concurrent recoveries before its balances are checked."""
    inv = conn.execute(locked(conn, invoices, invoices.c.id == invoice_id)).first()
    if inv is None:
        raise LedgerError(f"invoice {invoice_id} does not exist")
    return inv


def _replayed(inv: Row, prior: Row, amt: Decimal, payment_ref: str) -> RecoveryResult:
    """The first booking of this payment on this invoice; refused if the amount differs."""
    if prior.amount != amt:
        raise LedgerError(
            f"payment {payment_ref} was already booked as a recovery of {money_str(prior.amount)} on "
            f"{inv.invoice_ref}, not {money_str(amt)}"
        )
    return RecoveryResult(
        prior.id,
        prior.journal_entry_id,
        inv.invoice_ref,
        prior.amount,
        prior.currency,
        inv.recovered_amount,
        inv.status,
        True,
    )


def _check_recoverable(inv: Row, amt: Decimal) -> None:
    recoverable = inv.written_off_amount - inv.recovered_amount
    if amt > recoverable:
        raise AmountExceedsBalance(
            f"recovery of {money_str(amt)} {inv.currency} on {inv.invoice_ref} exceeds what is written off and not "
            f"yet recovered ({money_str(recoverable)} = written off {money_str(inv.written_off_amount)} - recovered "
            f"{money_str(inv.recovered_amount)})"
        )


def _post_entry(
    conn: Connection,
    inv: Row,
    accts: Accounts,
    amt: Decimal,
    recovery_date: date,
    payment_ref: str,
    key: str,
    actor: str,
) -> int:
    """Post the recovery entry; its id."""
    entry = entries.recovery(
        accts,
        posting_date=recovery_date,
        invoice_id=inv.id,
        invoice_ref=inv.invoice_ref,
        currency=inv.currency,
        amount=amt,
        fx_rate=inv.fx_rate,
        payment_ref=payment_ref,
    )
    if entry.key != key:
        raise LedgerError(f"recovery key scheme mismatch: {entry.key} != {key}")
    posted = ledger.post_entries(conn, [entry], created_by=actor)
    return {**posted.posted, **posted.already}[key]


def _record(
    conn: Connection, inv: Row, amt: Decimal, recovery_date: date, payment_ref: str, key: str, entry_id: int
) -> tuple[int, Decimal, str]:
    """Store the recovery row and move the invoice's recovered amount and status; (recovery id, total, status)."""
    payment_id = conn.execute(
        select(payments.c.id).where(payments.c.entity_code == inv.entity_code, payments.c.payment_ref == payment_ref)
    ).scalar()
    recovery_id = conn.execute(
        insert(recoveries)
        .values(
            invoice_id=inv.id,
            payment_id=payment_id,
            recovery_date=recovery_date,
            currency=inv.currency,
            amount=amt,
            idempotency_key=key,
            journal_entry_id=entry_id,
        )
        .returning(recoveries.c.id)
    ).scalar_one()
    total = inv.recovered_amount + amt
    status = "recovered" if total == inv.written_off_amount else "partially_recovered"
    check_status("invoice", inv.status, status)
    with subledger.movement(conn, "recovery", recovery_date, key):
        conn.execute(update(invoices).where(invoices.c.id == inv.id).values(recovered_amount=total, status=status))
    return recovery_id, total, status
