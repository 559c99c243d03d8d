"""Invoice, batch and write-off statuses as enums, each with ONE transition table.

The database keeps the status columns as short strings with CHECK constraints (readable in raw SQL and audit
reports); these enums are the same values. :func:`check` refuses a move the table does not list, with both states
named. Row-wise code (recovery, reversal, approvals) calls it before writing; set-wise statements compute their
new status with expressions whose every outcome is tested against this table (tests/integration/test_money_path.py).
"""

from __future__ import annotations

from enum import StrEnum

from writeoffs.errors import LedgerError


class InvoiceStatus(StrEnum):
    OPEN = "open"  # receivable on the books, collectable
    PAID = "paid"  # open balance reached zero through payments
    CHARGED_OFF = "charged_off"  # declared unlikely to be collected; still on the books, payments still reduce it
    WRITTEN_OFF = "written_off"  # removed from AR (fully; a partial write-off leaves the invoice open/charged off)
    PARTIALLY_RECOVERED = "partially_recovered"  # money arrived after the write-off, less than written off
    RECOVERED = "recovered"  # everything written off was recovered
    REVERSED = "reversed"  # write-off undone: receivable reinstated; not re-proposed until cleared


class BatchStatus(StrEnum):
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    POSTED = "posted"
    PARTIALLY_POSTED = "partially_posted"


class WriteoffStatus(StrEnum):
    CANDIDATE = "candidate"
    EXCLUDED = "excluded"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    POSTED = "posted"
    SKIPPED = "skipped"
    REVERSED = "reversed"


I = InvoiceStatus  # noqa: E741 - table shorthand
INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    # a partial write-off or a partial payment leaves an open invoice open; cash on the written-off part of a
    # partly written-off invoice is a recovery (its open part takes cash first)
    # (a partial write-off of it can be reversed too: the invoice is then 'reversed')
    I.OPEN: frozenset({I.OPEN, I.PAID, I.CHARGED_OFF, I.WRITTEN_OFF, I.PARTIALLY_RECOVERED, I.RECOVERED, I.REVERSED}),
    # the source may reopen a paid invoice (a bounced payment): its balance is authoritative
    I.PAID: frozenset({I.PAID, I.OPEN, I.PARTIALLY_RECOVERED, I.RECOVERED, I.REVERSED}),
    # cash on a charged-off invoice reduces it; paid in full undoes the charge-off
    I.CHARGED_OFF: frozenset({I.CHARGED_OFF, I.PAID, I.WRITTEN_OFF, I.REVERSED}),
    I.WRITTEN_OFF: frozenset({I.WRITTEN_OFF, I.PARTIALLY_RECOVERED, I.RECOVERED, I.REVERSED}),
    I.PARTIALLY_RECOVERED: frozenset({I.PARTIALLY_RECOVERED, I.RECOVERED}),
    I.RECOVERED: frozenset({I.RECOVERED}),
    # a reversed invoice is collectable again; a person clears it (-> open) or a policy cooling period ends
    I.REVERSED: frozenset({I.REVERSED, I.OPEN, I.PAID, I.WRITTEN_OFF}),
}

B = BatchStatus
BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    B.PROPOSED: frozenset({B.AWAITING_APPROVAL, B.APPROVED, B.REJECTED, B.EXPIRED, B.CONFIRMED}),
    B.AWAITING_APPROVAL: frozenset({B.APPROVED, B.REJECTED, B.EXPIRED}),
    B.APPROVED: frozenset({B.CONFIRMED, B.REJECTED, B.EXPIRED}),
    B.CONFIRMED: frozenset({B.POSTED, B.PARTIALLY_POSTED}),
    B.REJECTED: frozenset(),
    B.EXPIRED: frozenset(),
    B.POSTED: frozenset(),
    B.PARTIALLY_POSTED: frozenset(),
}

W = WriteoffStatus
WRITEOFF_TRANSITIONS: dict[WriteoffStatus, frozenset[WriteoffStatus]] = {
    W.CANDIDATE: frozenset({W.APPROVED, W.EXCLUDED, W.REJECTED, W.EXPIRED}),
    W.APPROVED: frozenset({W.POSTED, W.SKIPPED, W.EXCLUDED}),
    W.EXCLUDED: frozenset(),
    W.REJECTED: frozenset(),
    W.EXPIRED: frozenset(),
    W.POSTED: frozenset({W.REVERSED}),
    W.SKIPPED: frozenset(),
    W.REVERSED: frozenset(),
}

#: Invoice statuses from which a write-off may be posted (re-checked inside the posting transaction).
POSTABLE_INVOICE_STATUSES: tuple[str, ...] = (I.OPEN, I.CHARGED_OFF, I.REVERSED)
#: Statuses in which nothing of the invoice is open and what was written off is still owed: cash that arrives is a
#: recovery, never a payment of the (zero) open balance.
RECOVERY_STATUSES: tuple[str, ...] = (I.WRITTEN_OFF, I.PARTIALLY_RECOVERED, I.RECOVERED)
#: Statuses the ledger owns: a source never overwrites them (the invoice has left AR through our write-off).
LEDGER_OWNED_STATUSES: tuple[str, ...] = RECOVERY_STATUSES


def check(kind: str, old: str, new: str) -> None:
    """Refuse a status move that the ``kind`` table ('invoice', 'batch', 'writeoff') does not list."""
    table, enum = {
        "invoice": (INVOICE_TRANSITIONS, InvoiceStatus),
        "batch": (BATCH_TRANSITIONS, BatchStatus),
        "writeoff": (WRITEOFF_TRANSITIONS, WriteoffStatus),
    }[kind]
    try:
        allowed = table[enum(old)]
        target = enum(new)
    except ValueError:
        raise LedgerError(f"{kind} status move {str(old)!r} -> {str(new)!r}: unknown status") from None
    if target not in allowed:
        raise LedgerError(f"{kind} status move {str(old)!r} -> {str(new)!r} is not allowed")
