"""Recovery: money received on an amount already written off.

- direct method:    Dr Cash / Cr Bad Debt Recovery (income)
- allowance method: reinstate, then collect, in ONE balanced entry of four lines (so the recovery row links to a
  single entry): Dr AR / Cr Allowance, then Dr Cash / Cr AR. The AR lines net to zero, so the invoice's open
  balance does not move, exactly as in the sub-ledger.

A recovery never exceeds what was written off on the invoice minus what was already recovered
(:class:`AmountExceedsBalance`). Functional amounts use the invoice's booked ``fx_rate``: realised FX gains or
losses on late cash are out of scope here (the cash account is then translated at the booked rate).

Idempotent per ``rec:<entity>:<payment_ref>:<invoice_id>``: booking the same payment on the same invoice twice
returns the first booking (and refuses if the amount differs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, insert, select, update

from writeoffs import audit, ledger
from writeoffs.db.schema import invoices, legal_entities, payments, recoveries
from writeoffs.errors import AmountExceedsBalance, InvalidAmount, LedgerError
from writeoffs.journal import JournalEntry, JournalLine
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
    return f"rec:{entity}:{payment_ref}:{invoice_id}"


def book_recovery(
    conn: Connection,
    invoice_id: int,
    amount: object,
    recovery_date: date,
    payment_ref: str,
    actor: str,
) -> RecoveryResult:
    """Book a recovery in the caller's transaction; see the module docstring for the entries."""
    q = select(invoices).where(invoices.c.id == invoice_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    else:  # SQLite: take the writer lock before reading the balances we check
        conn.execute(update(invoices).where(invoices.c.id == invoice_id).values(id=invoices.c.id))
    inv = conn.execute(q).first()
    if inv is None:
        raise LedgerError(f"invoice {invoice_id} does not exist")
    amt = round_money(to_decimal(amount), inv.currency)
    if amt <= 0:
        raise InvalidAmount(f"recovery on {inv.invoice_ref}: amount must be positive, got {amount}")
    key = recovery_key(inv.entity_code, payment_ref, invoice_id)

    prior = conn.execute(select(recoveries).where(recoveries.c.idempotency_key == key)).first()
    if prior is not None:
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

    recoverable = inv.written_off_amount - inv.recovered_amount
    if amt > recoverable:
        raise AmountExceedsBalance(
            f"recovery of {money_str(amt)} {inv.currency} on {inv.invoice_ref} exceeds what is written off and not "
            f"yet recovered ({money_str(recoverable)} = written off {money_str(inv.written_off_amount)} - recovered "
            f"{money_str(inv.recovered_amount)})"
        )
    ent = conn.execute(select(legal_entities).where(legal_entities.c.code == inv.entity_code)).one()
    fc = ent.functional_currency
    famt = round_money(amt * inv.fx_rate, fc)
    cash = ledger.account_for_role(conn, inv.entity_code, "cash")
    memo = f"recovery {inv.invoice_ref} payment {payment_ref}"

    def dr(account: str) -> JournalLine:
        return JournalLine(
            account=account,
            currency=inv.currency,
            debit=amt,
            functional_currency=fc,
            functional_debit=famt,
            functional_credit=Decimal(0),
            invoice_id=inv.id,
            memo=memo,
        )

    def cr(account: str) -> JournalLine:
        return JournalLine(
            account=account,
            currency=inv.currency,
            credit=amt,
            functional_currency=fc,
            functional_debit=Decimal(0),
            functional_credit=famt,
            invoice_id=inv.id,
            memo=memo,
        )

    if ent.writeoff_method == "allowance":
        ar = ledger.account_for_role(conn, inv.entity_code, "ar_control")
        allowance = ledger.account_for_role(conn, inv.entity_code, "allowance")
        lines = (dr(ar), cr(allowance), dr(cash), cr(ar))
    else:
        lines = (dr(cash), cr(ledger.account_for_role(conn, inv.entity_code, "recovery_income")))
    entry = JournalEntry(
        key=key,
        entity=inv.entity_code,
        posting_date=recovery_date,
        lines=lines,
        description=f"Recovery of written-off {inv.invoice_ref} ({ent.writeoff_method} method), payment {payment_ref}",
        source_type="recovery",
        source_id=str(inv.id),
    )
    posted = ledger.post_entries(conn, [entry], created_by=actor)
    entry_id = {**posted.posted, **posted.already}[key]

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
    conn.execute(update(invoices).where(invoices.c.id == inv.id).values(recovered_amount=total, status=status))
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
            "method": ent.writeoff_method,
        },
    )
    return RecoveryResult(recovery_id, entry_id, inv.invoice_ref, amt, inv.currency, total, status)
