"""The approver's view of a batch and its items (:class:`BatchView`, :class:`BatchItem`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from writeoffs.money import quantum

#: Item statuses that leave an item out of what will be posted.
NOT_POSTED_STATUSES = frozenset({"excluded", "rejected", "expired", "skipped", "reversed"})
#: Markdown tables beyond this many rows stop being readable in the approval form; the CSV has everything.
DEFAULT_TOP_N = 10
CONFIRM_LIST_MAX = 50


@dataclass(frozen=True, slots=True)
class BatchItem:
    writeoff_id: int
    invoice_ref: str
    customer_ref: str
    customer_name: str
    amount: Decimal
    reason_code: str
    rule: str
    days_past_due: int
    bucket: str
    status: str
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchView:
    batch_id: int
    batch_key: str
    entity_code: str
    currency: str
    tier: str
    as_of_date: date
    status: str
    policy_version: str
    policy_hash: str
    batch_hash: str | None
    prepared_by: str | None
    items: tuple[BatchItem, ...]

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.items), Decimal(0))

    @property
    def largest(self) -> Decimal:
        return max((i.amount for i in self.items), default=Decimal(0))

    def fmt(self, amount: Decimal) -> str:
        return f"{amount.quantize(quantum(self.currency)):,} {self.currency}"
