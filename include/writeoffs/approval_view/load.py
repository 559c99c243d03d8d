"""Loading a batch's view from the ledger (:func:`load_batch_view`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, select

from writeoffs.approval_view.model import BatchItem, BatchView
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_of
from writeoffs.db.schema import accounts, approvals, customers, invoices, writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError


def _evidence(raw: str | None) -> dict[str, object]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        # Evidence is informative only; an unreadable blob is shown as is rather than hiding the item.
        return {"raw": raw}
    return value if isinstance(value, dict) else {"value": value}


#: What an item view reads: the write-off, its invoice and customer (:func:`items_source`).
ITEM_COLUMNS = (
    writeoffs.c.id,
    writeoffs.c.amount,
    writeoffs.c.reason_code,
    writeoffs.c.rule,
    writeoffs.c.evidence,
    writeoffs.c.status,
    invoices.c.invoice_ref,
    invoices.c.due_date,
    customers.c.customer_ref,
    customers.c.name,
)


def items_source():
    """Write-offs joined to their invoice and customer: the FROM of :data:`ITEM_COLUMNS`."""
    return writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id).join(
        customers, customers.c.id == invoices.c.customer_id
    )


def item_of(row, as_of: date, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> BatchItem:
    """A row of :data:`ITEM_COLUMNS` as the item an approver sees, aged at the batch's business date."""
    dpd = (as_of - row.due_date).days
    return BatchItem(
        writeoff_id=row.id,
        invoice_ref=row.invoice_ref,
        customer_ref=row.customer_ref,
        customer_name=row.name,
        amount=Decimal(row.amount),
        reason_code=row.reason_code,
        rule=row.rule,
        days_past_due=dpd,
        bucket=bucket_of(dpd, buckets),
        status=row.status,
        evidence=_evidence(row.evidence),
    )


def load_batch_view(conn: Connection, batch_id: int, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> BatchView:
    """Read a batch and all its items (any status) from the ledger."""
    b = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == batch_id)).first()
    if b is None:
        raise ApprovalError(f"write-off batch {batch_id} does not exist")
    rows = conn.execute(
        select(*ITEM_COLUMNS)
        .select_from(items_source())
        .where(writeoffs.c.batch_id == batch_id)
        .order_by(writeoffs.c.amount.desc(), invoices.c.invoice_ref)
    ).all()
    items = [item_of(r, b.as_of_date, buckets) for r in rows]
    return BatchView(
        batch_id=b.id,
        batch_key=b.batch_key,
        entity_code=b.entity_code,
        currency=b.currency,
        tier=b.tier,
        as_of_date=b.as_of_date,
        status=b.status,
        policy_version=b.policy_version,
        policy_hash=b.policy_hash,
        batch_hash=b.batch_hash,
        prepared_by=b.prepared_by,
        items=tuple(items),
    )


@dataclass(frozen=True, slots=True)
class ConfirmationFacts:
    """What the confirm step shows besides the items: who approved, what they excluded, the entry's two sides."""

    approved_by: str | None
    excluded_refs: list[str]
    debit_account: str
    credit_account: str


def confirmation_facts(conn: Connection, view: BatchView) -> ConfirmationFacts:
    """The approve step's answer (approver, exclusions) and the accounts the write-off entry will use."""
    row = conn.execute(
        select(approvals.c.approver, approvals.c.excluded_invoice_refs).where(
            approvals.c.batch_id == view.batch_id, approvals.c.step == "approve"
        )
    ).first()
    excluded = json.loads(row.excluded_invoice_refs or "[]") if row else []
    debit, credit = entry_accounts(conn, view, excluded)
    return ConfirmationFacts(
        approved_by=row.approver if row else None,
        excluded_refs=excluded,
        debit_account=debit,
        credit_account=credit,
    )


def entry_accounts(conn: Connection, view: BatchView, excluded_refs: Sequence[str] = ()) -> tuple[str, str]:
    """The write-off entries' debit and credit accounts, code and name, resolved exactly as posting resolves them
    (``writeoffs.accounting.chart``: :func:`accounts_for_batch`, the entity's chart and the reason map of the
    policy version the batch was selected under, checked by :func:`check_postable` over every item's reason, as
    posting checks them): the allowance under the allowance method, the expense account of each reason that will
    post under the direct method; the AR control account. What posting would refuse is said, not guessed."""
    from writeoffs.accounting.chart import Role, accounts_for_batch, check_postable
    from writeoffs.approval_view.items import to_post
    from writeoffs.errors import WriteoffError, shorten

    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == view.batch_id)).one()
    try:
        accts = accounts_for_batch(conn, batch)
        check_postable(accts, (i.reason_code for i in view.items))
        debits: dict[str, list[str]] = {}
        for reason in sorted({i.reason_code for i in to_post(view, excluded_refs)}):
            debits.setdefault(accts.writeoff_debit(reason), []).append(reason)
        ar = accts.role(Role.AR_CONTROL)
    except WriteoffError as exc:
        problem = f"cannot be resolved: {shorten(str(exc), 200)} (posting will refuse)"
        return problem, problem
    names = dict(
        conn.execute(
            select(accounts.c.code, accounts.c.name).where(
                accounts.c.entity_code == view.entity_code, accounts.c.code.in_([*debits, ar])
            )
        ).all()
    )

    def named(code: str) -> str:
        return f"{code} {names[code]}"  # every code resolved above is an account of the entity's chart

    # One account: its name; several (the direct method, reasons on different accounts): each with its reasons.
    parts = [named(code) if len(debits) == 1 else f"{named(code)} ({', '.join(rs)})" for code, rs in debits.items()]
    return ", ".join(parts) or "(no item to post)", named(ar)
