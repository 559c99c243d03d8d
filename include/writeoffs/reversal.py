"""Undo a posted write-off: post the mirror entry, linked to the original, and reinstate the receivable.

Nothing in the journal is ever updated or deleted: the original entry stays, the reversal entry (key
``rev:<original entry id>``, ``reverses_entry_id`` = original) cancels it. ``journal_entries.reverses_entry_id`` is
unique, so the database itself refuses a second reversal of the same entry.

Status semantics after a reversal:

- ``writeoffs.status = 'reversed'`` (terminal; ``journal_entry_id`` still points at the original entry);
- ``invoices.status = 'reversed'``: the receivable is back on the books and collectable. For aging, reconciliation
  and collections, 'reversed' counts as open (open_balance > 0); it stays distinguishable so that the policy does
  not silently re-propose a write-off somebody deliberately undid. A later write-off posted on it sets it back to
  'open' (partial) or 'written_off' (full);
- ``open_balance`` goes back up and ``written_off_amount`` down by the reversed amount; ``written_off_date`` is
  cleared when nothing remains written off.

A write-off on an invoice with recoveries booked against it is not reversed (the recovery would then exceed what is
written off): reverse the recovery first.

A reversal is a controlled change, checked here in the ledger layer whatever the caller: the reason comes from a
fixed catalogue (:data:`REVERSAL_REASONS`), the requester and the approver are authenticated identities passed by
the orchestration (never a param), they differ, and the approver is an approver of the tier entitled to the amount
(or a higher one) under the policy version the write-off was selected under (:func:`plan_reversal`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Row, case, select, update

from writeoffs import audit, ledger, subledger
from writeoffs.accounting import entries
from writeoffs.accounting.chart import batch_policy
from writeoffs.accounting.status import InvoiceStatus, WriteoffStatus
from writeoffs.accounting.status import check as check_status
from writeoffs.catalogues import REVERSAL_REASONS
from writeoffs.db.locks import locked
from writeoffs.db.schema import invoices, journal_entries, journal_lines, writeoff_batches, writeoffs
from writeoffs.errors import ConfigError, LedgerError, SegregationOfDuties
from writeoffs.identity import normalized as _norm
from writeoffs.journal import JournalEntry, JournalLine
from writeoffs.money import money_str
from writeoffs.tiers import AUTO_TIER, Tier, tier_for


@dataclass(frozen=True, slots=True)
class ReversalResult:
    writeoff_id: int
    invoice_ref: str
    original_entry_id: int
    reversal_entry_id: int
    amount: Decimal
    currency: str
    replayed: bool = False  # True: this request had already been carried out (retried task)

    def summary(self) -> dict:
        return {
            "writeoff_id": self.writeoff_id,
            "invoice_ref": self.invoice_ref,
            "original_entry_id": self.original_entry_id,
            "reversal_entry_id": self.reversal_entry_id,
            "amount": money_str(self.amount),
            "currency": self.currency,
            "replayed": self.replayed,
        }


def _request_ref(request_id: str | None) -> str | None:
    if not request_id:
        return None
    return request_id if len(request_id) <= 64 else hashlib.sha256(request_id.encode()).hexdigest()


def find_writeoff(conn: Connection, *, writeoff_id: int | None, invoice_ref: str | None, entity_code: str | None):
    """The write-off to reverse, by id, or by invoice reference (the only posted or reversed one on it)."""
    q = select(writeoffs, invoices.c.invoice_ref, invoices.c.entity_code).select_from(
        writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id)
    )
    if writeoff_id is not None:
        q = q.where(writeoffs.c.id == writeoff_id)
    elif invoice_ref:
        q = q.where(invoices.c.invoice_ref == invoice_ref, writeoffs.c.status.in_(("posted", "reversed")))
        if entity_code:
            q = q.where(invoices.c.entity_code == entity_code)
    else:
        raise LedgerError("name the write-off to reverse: a write-off id or an invoice reference")
    rows = conn.execute(q.order_by(writeoffs.c.id)).all()
    if not rows:
        raise LedgerError(f"no posted write-off found for {writeoff_id or invoice_ref!r}")
    posted = [r for r in rows if r.status == "posted"]
    if len(posted) > 1:
        raise LedgerError(
            f"invoice {invoice_ref} has {len(posted)} posted write-offs {[r.id for r in posted]}; give the write-off id"
        )
    return posted[0] if posted else rows[-1]


@dataclass(frozen=True, slots=True)
class ReversalPlan:
    """Who may approve the reversal of one posted write-off (computed before anyone is asked)."""

    writeoff_id: int
    invoice_ref: str
    entity_code: str
    amount: Decimal
    currency: str
    tier: str
    #: The entitled tier's approvers and those of every higher tier, minus the requester.
    approvers: tuple[str, ...]
    policy_version: str

    def summary(self) -> dict:
        return {
            "writeoff_id": self.writeoff_id,
            "invoice_ref": self.invoice_ref,
            "entity_code": self.entity_code,
            "amount": money_str(self.amount),
            "currency": self.currency,
            "tier": self.tier,
            "approvers": list(self.approvers),
            "policy_version": self.policy_version,
        }


def _check_reason(reason: str) -> None:
    if reason not in REVERSAL_REASONS:
        raise LedgerError(f"reversal reason {str(reason)[:40]!r} is not in the catalogue: {sorted(REVERSAL_REASONS)}")


def _entitled(conn: Connection, wo, tiers: Sequence[Tier] | None) -> tuple[Tier, tuple[str, ...], str]:
    """The tier entitled to reverse ``wo`` and the approvers who may (its own and every higher tier's).

    Tiers come from the policy version the write-off's batch recorded unless given; refused if it cannot be read."""
    batch = conn.execute(select(writeoff_batches).where(writeoff_batches.c.id == wo.batch_id)).first()
    if batch is None and tiers is None:
        raise LedgerError(f"write-off {wo.id} has no batch: cannot tell who may reverse it")
    if tiers is None:
        try:
            tiers = batch_policy(conn, batch).tiers
        except ConfigError as exc:
            raise LedgerError(f"write-off {wo.id}: reversal refused: {exc}") from exc
    human = [t for t in tiers if t.name != AUTO_TIER]
    try:
        tier = tier_for(wo.amount, wo.currency, human, total=wo.amount)
    except ConfigError as exc:
        raise LedgerError(f"write-off {wo.id}: nobody may approve its reversal: {exc}") from exc
    above = human[[t.name for t in human].index(tier.name) :]
    approvers = tuple(dict.fromkeys(a for t in above for a in t.approvers))
    return tier, approvers, batch.policy_version if batch is not None else wo.policy_version


def plan_reversal(
    conn: Connection,
    *,
    reason: str,
    requested_by: str,
    writeoff_id: int | None = None,
    invoice_ref: str | None = None,
    entity_code: str | None = None,
    tiers: Sequence[Tier] | None = None,
) -> ReversalPlan:
    """Check a reversal request and say who may approve it; refuse when nobody but the requester could."""
    _check_reason(reason)
    if not _norm(requested_by):
        raise LedgerError("a reversal request needs the authenticated requester")
    wo = find_writeoff(conn, writeoff_id=writeoff_id, invoice_ref=invoice_ref, entity_code=entity_code)
    if wo.status != "posted":
        raise LedgerError(f"write-off {wo.id} on {wo.invoice_ref} is {wo.status!r}: only posted write-offs reverse")
    tier, approvers, policy_version = _entitled(conn, wo, tiers)
    others = tuple(a for a in approvers if _norm(a) != _norm(requested_by))
    if not others:
        raise SegregationOfDuties(
            f"reversal of write-off {wo.id}: {requested_by!r} is the only approver entitled ({tier.name}); "
            "the requester cannot approve their own request"
        )
    return ReversalPlan(
        wo.id, wo.invoice_ref, wo.entity_code, wo.amount, wo.currency, tier.name, others, policy_version
    )


def reverse_writeoff(
    conn: Connection,
    *,
    reason: str,
    requested_by: str,
    approved_by: str,
    posting_date: date,
    writeoff_id: int | None = None,
    invoice_ref: str | None = None,
    entity_code: str | None = None,
    request_id: str | None = None,
    note: str | None = None,
    tiers: Sequence[Tier] | None = None,
) -> ReversalResult:
    """Reverse one posted write-off in the caller's transaction, once approved by an entitled other person.

    ``request_id`` (e.g. the DAG run id) makes a retried request return its earlier result instead of failing;
    any other second reversal of the same write-off is refused. ``tiers`` default to the recorded policy's.
    """
    _check_reason(reason)
    if not _norm(requested_by) or not _norm(approved_by):
        raise LedgerError("a reversal needs the authenticated requester and approver")
    if _norm(requested_by) == _norm(approved_by):
        raise SegregationOfDuties(f"{approved_by!r} requested this reversal and cannot approve it")
    found = find_writeoff(conn, writeoff_id=writeoff_id, invoice_ref=invoice_ref, entity_code=entity_code)
    wo, inv = _lock_writeoff(conn, found)
    ref = _request_ref(request_id)

    if wo.status == "reversed":
        return _replayed(conn, wo, inv, ref)
    tier = _check_reversible(conn, wo, inv, approved_by, tiers)

    original, entry = _original_entry(conn, wo.journal_entry_id)
    mirror = entries.reversal(
        entry,
        original_entry_id=original.id,
        posting_date=posting_date,
        description=(
            f"Reversal of write-off {wo.id} on {inv.invoice_ref}: {reason} "
            f"(requested by {requested_by}, approved by {approved_by})"
        ),
        source_id=ref or str(wo.id),
        policy_version=original.policy_version,
    )
    posted = ledger.post_entries(conn, [mirror], created_by=requested_by, batch_id=original.batch_id)
    reversal_id = {**posted.posted, **posted.already}[mirror.key]

    _reinstate(conn, wo, inv, posting_date, mirror.key)
    audit.append(
        conn,
        actor=approved_by,
        action="writeoff.reversed",
        object_type="writeoff",
        object_id=wo.id,
        details={
            "invoice_ref": inv.invoice_ref,
            "amount": wo.amount,
            "currency": wo.currency,
            "reason": reason,
            "note": (note or "")[:500] or None,
            "requested_by": requested_by,
            "approved_by": approved_by,
            "tier": tier.name,
            "original_entry_id": original.id,
            "reversal_entry_id": reversal_id,
            "posting_date": posting_date,
            "request_id": request_id,
        },
    )
    return ReversalResult(wo.id, inv.invoice_ref, original.id, reversal_id, wo.amount, wo.currency)


def _lock_writeoff(conn: Connection, found: Row) -> tuple[Row, Row]:
    """The write-off and its invoice, locked before anything about them is checked: (write-off, invoice)."""
    wo = conn.execute(locked(conn, writeoffs, writeoffs.c.id == found.id)).one()
    inv = conn.execute(locked(conn, invoices, invoices.c.id == found.invoice_id)).one()
    return wo, inv


def _replayed(conn: Connection, wo: Row, inv: Row, ref: str | None) -> ReversalResult:
    """An already reversed write-off: the earlier result if this same request reversed it, else refused."""
    prior = conn.execute(
        select(journal_entries.c.id, journal_entries.c.source_id).where(
            journal_entries.c.reverses_entry_id == wo.journal_entry_id
        )
    ).first()
    if prior is not None and ref is not None and prior.source_id == ref:
        return ReversalResult(wo.id, inv.invoice_ref, wo.journal_entry_id, prior.id, wo.amount, wo.currency, True)
    raise LedgerError(
        f"write-off {wo.id} on {inv.invoice_ref} is already reversed (reversal entry {prior.id if prior else '?'})"
    )


def _check_reversible(conn: Connection, wo: Row, inv: Row, approved_by: str, tiers: Sequence[Tier] | None) -> Tier:
    """Refused unless ``wo`` is posted, ``approved_by`` is entitled and nothing is recovered against it; its tier."""
    if wo.status != "posted" or wo.journal_entry_id is None:
        raise LedgerError(f"write-off {wo.id} on {inv.invoice_ref} is {wo.status!r}: only posted write-offs reverse")
    tier, approvers, _ = _entitled(conn, wo, tiers)
    if _norm(approved_by) not in {_norm(a) for a in approvers}:
        raise SegregationOfDuties(
            f"{approved_by!r} may not approve the reversal of {money_str(wo.amount)} {wo.currency}: "
            f"tier {tier.name!r} or higher decides (approvers: {', '.join(approvers)})"
        )
    if inv.recovered_amount > inv.written_off_amount - wo.amount:
        raise LedgerError(
            f"invoice {inv.invoice_ref} has {money_str(inv.recovered_amount)} recovered against its write-off; "
            "reverse the recovery first"
        )
    return tier


def _original_entry(conn: Connection, entry_id: int) -> tuple[Row, JournalEntry]:
    """The write-off's journal entry as stored: (its row, the entry rebuilt from its lines)."""
    original = conn.execute(select(journal_entries).where(journal_entries.c.id == entry_id)).one()
    lines = conn.execute(
        select(journal_lines).where(journal_lines.c.entry_id == original.id).order_by(journal_lines.c.line_no)
    ).all()
    entry = JournalEntry(
        key=original.idempotency_key,
        entity=original.entity_code,
        posting_date=original.posting_date,
        lines=tuple(
            JournalLine(
                account=ln.account_code,
                currency=ln.currency,
                debit=ln.debit,
                credit=ln.credit,
                functional_currency=ln.functional_currency,
                functional_debit=ln.functional_debit,
                functional_credit=ln.functional_credit,
                invoice_id=ln.invoice_id,
                memo=ln.memo or "",
            )
            for ln in lines
        ),
        source_type=original.source_type,
        source_id=original.source_id,
    )
    return original, entry


def _reinstate(conn: Connection, wo: Row, inv: Row, posting_date: date, movement_key: str) -> None:
    """Put the receivable back on the invoice and mark invoice and write-off 'reversed'."""
    check_status("invoice", inv.status, InvoiceStatus.REVERSED)
    check_status("writeoff", wo.status, WriteoffStatus.REVERSED)
    remaining = invoices.c.written_off_amount - wo.amount
    with subledger.movement(conn, "reversal", posting_date, movement_key):
        conn.execute(
            update(invoices)
            .where(invoices.c.id == inv.id)
            .values(
                open_balance=invoices.c.open_balance + wo.amount,
                written_off_amount=remaining,
                status="reversed",
                written_off_date=case((remaining == 0, None), else_=invoices.c.written_off_date),
            )
        )
    conn.execute(update(writeoffs).where(writeoffs.c.id == wo.id).values(status="reversed"))


def clear_reversal(
    conn: Connection, *, invoice_ref: str, entity_code: str, reason: str, actor: str, on: date | None = None
) -> None:
    """A person clears a reversed invoice: it becomes ``open`` and the policy may propose it again.

    Until then (or until the policy's ``reversal_cooling_days`` have passed) selection excludes it as
    ``reversed_hold``. Audited with who and why.
    """
    if not (reason or "").strip():
        raise LedgerError("clearing a reversal needs a reason")
    inv = conn.execute(
        locked(conn, invoices, invoices.c.invoice_ref == invoice_ref, invoices.c.entity_code == entity_code)
    ).first()
    if inv is None:
        raise LedgerError(f"invoice {invoice_ref} of entity {entity_code} does not exist")
    if inv.status != InvoiceStatus.REVERSED:
        raise LedgerError(f"invoice {invoice_ref} is {inv.status!r}, not 'reversed': nothing to clear")
    check_status("invoice", inv.status, InvoiceStatus.OPEN)
    # A status-only movement, dated the day it is cleared (``on``: the business date, default today UTC).
    with subledger.movement(conn, "reversal_cleared", on or datetime.now(UTC).date(), f"cleared by {actor}"):
        conn.execute(update(invoices).where(invoices.c.id == inv.id).values(status=InvoiceStatus.OPEN.value))
    audit.append(
        conn,
        actor=actor,
        action="invoice.reversal_cleared",
        object_type="invoice",
        object_id=inv.id,
        details={"invoice_ref": invoice_ref, "entity": entity_code, "reason": reason},
    )
