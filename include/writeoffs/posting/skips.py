"""The skip rules, pure Python over the re-checked items: why an approved item must not be posted now
(:func:`skip_reason`, most fundamental reason first) and the batch-level rule that one posting writes an invoice off
once (:func:`_skips`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from writeoffs.accounting.status import POSTABLE_INVOICE_STATUSES
from writeoffs.money import money_str
from writeoffs.posting.model import _Context


def _naive_utc(value):
    """A timestamp as naive UTC (PostgreSQL returns aware values, SQLite naive ones; both are stored in UTC)."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def skip_reason(row, ctx: _Context) -> str | None:
    """Why an approved item must not be posted now (None: post it). Order: the most fundamental reason first.

    Runs inside the chunk's transaction with the invoices locked (PostgreSQL) or the single writer lock (SQLite).
    """
    if row.entity_code != ctx.entity:
        return f"invoice belongs to entity {row.entity_code}, the batch to {ctx.entity}"
    if row.invoice_currency != row.currency:
        return f"write-off currency {row.currency} differs from invoice currency {row.invoice_currency}"
    if row.invoice_status not in POSTABLE_INVOICE_STATUSES:
        return f"invoice status is {row.invoice_status!r} since approval"
    if row.on_hold:
        return "invoice or customer is on a dispute/payment-plan hold"
    if row.late_payment:
        return f"payment received after the as-of date {ctx.as_of}"
    if row.asof_balance is not None and row.asof_balance != row.open_balance:
        was, now = money_str(row.asof_balance), money_str(row.open_balance)
        return f"open balance changed since the as-of date ({was} -> {now})"
    if row.amount > row.open_balance:
        return f"amount {money_str(row.amount)} exceeds the open balance {money_str(row.open_balance)}"
    if row.other_posted_at is not None and (
        row.created_at is None or _naive_utc(row.other_posted_at) >= _naive_utc(row.created_at)
    ):
        return "another write-off of this invoice was posted since selection"
    if row.parent_id is not None and ctx.policy is not None:
        rules = ctx.policy.rules_for(row.entity_code, row.segment).parent_child
        if rules.exclude_if_parent_paid_transferred and row.transferred and row.parent_paid:
            return "child invoice whose balance went to the parent, and the parent has paid part of it"
        if rules.child_full_only and (row.amount != row.invoice_amount):
            return "child-account invoices are written off for their full invoice amount only"
    return None


def _skips(rows, ctx: _Context) -> list[tuple[object, str]]:
    """Per-row reasons plus the batch-level one: two items of the same invoice in one posting, the later skipped."""
    seen: set[int] = set()
    out = []
    for r in rows:
        reason = skip_reason(r, ctx)
        if reason is None and r.invoice_id in seen:
            reason = "another write-off of this invoice is in the same posting"
        if reason is None:
            seen.add(r.invoice_id)
        else:
            out.append((r, reason))
    return out
