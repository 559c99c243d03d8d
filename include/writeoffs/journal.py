"""Immutable journal entries that cannot be built unbalanced.

An entry balances per transaction currency (sum of debits = sum of credits) and, because the functional
amounts are what the entity reports, also in functional currency. The database enforces the same rule again
(see the migration's triggers): Python is the first line, not the only one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from writeoffs.errors import InvalidAmount, UnbalancedEntry
from writeoffs.money import check_currency, round_money


@dataclass(frozen=True, slots=True)
class JournalLine:
    account: str
    currency: str
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    functional_currency: str | None = None
    functional_debit: Decimal | None = None
    functional_credit: Decimal | None = None
    invoice_id: int | None = None
    memo: str = ""

    def __post_init__(self) -> None:
        cur = check_currency(self.currency)
        object.__setattr__(self, "currency", cur)
        debit = round_money(self.debit, cur)
        credit = round_money(self.credit, cur)
        if debit < 0 or credit < 0:
            raise InvalidAmount(f"line on {self.account}: debit and credit must not be negative")
        if (debit == 0) == (credit == 0):
            raise InvalidAmount(f"line on {self.account}: exactly one of debit or credit must be non-zero")
        object.__setattr__(self, "debit", debit)
        object.__setattr__(self, "credit", credit)
        fcur = check_currency(self.functional_currency or cur)
        object.__setattr__(self, "functional_currency", fcur)
        # Functional amounts default to the transaction amounts (same currency, rate 1); in FX the side that
        # carries no transaction amount defaults to zero, the other must be given.
        fd, fc = self.functional_debit, self.functional_credit
        if fd is None:
            fd = debit if fcur == cur or debit == 0 else None
        if fc is None:
            fc = credit if fcur == cur or credit == 0 else None
        if fd is None or fc is None:
            raise InvalidAmount(f"line on {self.account}: functional amounts are required for {cur}->{fcur}")
        fd, fc = round_money(fd, fcur), round_money(fc, fcur)
        # A debit stays a debit in functional currency: flipped or negative sides could balance while meaning nonsense.
        if fd < 0 or fc < 0 or (debit == 0 and fd != 0) or (credit == 0 and fc != 0):
            raise InvalidAmount(
                f"line on {self.account}: functional amounts must be non-negative and on the transaction amount's side"
            )
        object.__setattr__(self, "functional_debit", fd)
        object.__setattr__(self, "functional_credit", fc)

    @property
    def signed(self) -> Decimal:
        return self.debit - self.credit


def imbalances(
    lines: tuple[JournalLine, ...] | list[JournalLine],
) -> dict[str, Decimal]:
    """Per-currency (transaction and ``functional:XXX``) differences debit - credit that are not zero."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for ln in lines:
        sums[ln.currency] += ln.debit - ln.credit
        sums[f"functional:{ln.functional_currency}"] += (ln.functional_debit or 0) - (ln.functional_credit or 0)
    return {k: v for k, v in sums.items() if v != 0}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    key: str  # idempotency key, unique in the database
    entity: str
    posting_date: date
    lines: tuple[JournalLine, ...]
    description: str = ""
    source_type: str = "manual"
    source_id: str | None = None
    reverses_key: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple(self.lines))
        if not self.key:
            raise UnbalancedEntry("a journal entry needs an idempotency key")
        if len(self.lines) < 2:
            raise UnbalancedEntry(f"entry {self.key}: needs at least two lines")
        diff = imbalances(self.lines)
        if diff:
            detail = ", ".join(f"{k} off by {v}" for k, v in sorted(diff.items()))
            raise UnbalancedEntry(f"entry {self.key} does not balance: {detail}")

    def reversal(self, key: str, posting_date: date, description: str = "") -> JournalEntry:
        """The mirror entry: every debit becomes a credit and vice versa. Nothing is edited, ever."""
        mirrored = tuple(
            JournalLine(
                account=ln.account,
                currency=ln.currency,
                debit=ln.credit,
                credit=ln.debit,
                functional_currency=ln.functional_currency,
                functional_debit=ln.functional_credit,
                functional_credit=ln.functional_debit,
                invoice_id=ln.invoice_id,
                memo=f"reversal: {ln.memo}".strip(),
            )
            for ln in self.lines
        )
        return JournalEntry(
            key=key,
            entity=self.entity,
            posting_date=posting_date,
            lines=mirrored,
            description=description or f"Reversal of {self.key}",
            source_type="reversal",
            source_id=self.source_id,
            reverses_key=self.key,
        )

    def total_debit(self, currency: str) -> Decimal:
        return sum((ln.debit for ln in self.lines if ln.currency == currency), Decimal(0))
