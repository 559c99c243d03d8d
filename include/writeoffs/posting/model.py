"""Posting's value objects: what a run reports (:class:`PostingReport`, :class:`SkippedItem`), the chunk hook's type,
and the context every chunk of a run shares (:class:`_Context`, resolved once under the batch lock by
:func:`writeoffs.posting.batch._context`). The bottom of the package: it imports no other posting module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from writeoffs.accounting.chart import Accounts, Role
from writeoffs.money import money_str

ChunkHook = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class SkippedItem:
    writeoff_id: int
    invoice_ref: str
    reason: str


@dataclass
class PostingReport:
    batch_id: int
    status: str
    posted: int = 0  # posted by this call
    skipped: int = 0  # skipped by this call
    already_posted: int = 0  # posted before this call (idempotent replay)
    chunks: int = 0
    amounts: dict[str, Decimal] = field(default_factory=dict)  # currency -> amount posted by this call
    skipped_items: list[SkippedItem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON/XCom-safe summary (money as strings)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "posted": self.posted,
            "skipped": self.skipped,
            "already_posted": self.already_posted,
            "chunks": self.chunks,
            "amounts": {k: money_str(v) for k, v in sorted(self.amounts.items())},
            "skipped_items": [
                {"writeoff_id": s.writeoff_id, "invoice_ref": s.invoice_ref, "reason": s.reason}
                for s in self.skipped_items[:100]
            ],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass(frozen=True, slots=True)
class _Context:
    batch_id: int
    batch_key: str
    entity: str
    method: str
    functional_currency: str
    as_of: date
    posting_date: date
    accts: Accounts
    approval_ref: str
    actor: str
    allowance_shortfall: str = "refuse"  # the batch policy's switch (allowance method only)
    policy: Any = None  # the batch's recorded policy (parent/child rules at posting)
    #: The items still to post as they were when the approval was verified (id -> invoice, amount, reason): every
    #: chunk must equal them, with its rows locked, or the batch stops (approval binds the items, not a moment).
    approved: dict[int, tuple[int, Decimal, str]] = field(default_factory=dict)
    already_posted: int = 0  # items of the batch posted (or reversed) before this call, as _already counts them

    @property
    def ar_account(self) -> str:
        return self.accts.role(Role.AR_CONTROL)


@dataclass(frozen=True, slots=True)
class _PeriodProbe:
    """What :func:`ledger.check_periods_open` needs, before any entry exists."""

    entity: str
    posting_date: date
