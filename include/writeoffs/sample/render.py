"""Turn numeric chunk columns into the text each output needs, column-wise.

Every format is a :class:`Style` (how dates, amounts, flags and nulls are spelled). Dates and other small
vocabularies are rendered through lookup tables (a few thousand distinct dates), so the per-row cost is a numpy
gather, not a ``strftime``; amounts are formatted from integer cents, so no float ever touches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from writeoffs.db.money import SCALED_PER_CENT
from writeoffs.sample.generator import (
    ACTIVITY_TYPES,
    CURRENCIES,
    DESCRIPTION_TABLE,
    DISPUTE_REASONS,
    ENTITIES,
    ERP_ACTIVITY,
    HOLD_TYPES,
    NO_DATE,
    ONE_E4,
    OUTCOMES,
    RESOLUTIONS,
    SEGMENTS,
    WORKED_INVOICE_REF,
    Chunk,
    Universe,
)

#: Canonical field names (the contract shared with ingestion), in output order.
INVOICE_FIELDS: tuple[str, ...] = (
    "entity",
    "invoice_ref",
    "customer_ref",
    "customer_name",
    "parent_customer_ref",
    "segment",
    "invoice_date",
    "due_date",
    "currency",
    "amount",
    "open_balance",
    "fx_rate",
    "disputed",
    "dispute_since",
    "payment_plan",
    "bankrupt",
    "transferred_to_parent",
    "description",
)
PAYMENT_FIELDS: tuple[str, ...] = (
    "entity",
    "payment_ref",
    "customer_ref",
    "payment_date",
    "currency",
    "amount",
    "invoice_ref",
    "applied_amount",
)
ACTIVITY_FIELDS: tuple[str, ...] = (
    "entity",
    "customer_ref",
    "invoice_ref",
    "activity_type",
    "activity_date",
    "end_date",
    "outcome",
)
#: The ERP export's own (non-canonical) headers, position by position.
INVOICE_HEADERS: tuple[str, ...] = (
    "Company",
    "Invoice No",
    "Customer No",
    "Customer Name",
    "Parent Customer No",
    "Segment",
    "Invoice Date",
    "Due Date",
    "Currency",
    "Amount",
    "Open Balance",
    "FX Rate",
    "Disputed",
    "Dispute Since",
    "Payment Plan",
    "Bankrupt",
    "Transferred To Parent",
    "Description",
)
PAYMENT_HEADERS: tuple[str, ...] = (
    "Company",
    "Payment No",
    "Customer No",
    "Payment Date",
    "Currency",
    "Amount",
    "Invoice No",
    "Applied Amount",
)
ACTIVITY_HEADERS: tuple[str, ...] = ("Company", "Customer No", "Invoice No", "Activity", "Date", "End Date", "Outcome")

#: Dates beyond as-of: current invoices fall due up to 60 days later.
FUTURE_DAYS = 90
#: One ledger table's rows, columnar: (table, columns, column values).
LedgerTable = tuple[str, tuple[str, ...], list[list[object]]]


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    date_format: str  # strftime pattern
    grouped: bool  # thousands separator in amounts
    true: object
    false: object
    null: object
    erp_vocabulary: bool  # Call/Email/... instead of contact_attempt/...
    #: Money as the SQLite ledger stores it (integer ten-thousandths, ``writeoffs.db.money``) instead of text.
    scaled_money: bool = False


CSV = Style("csv", "%m/%d/%Y", True, "Yes", "No", "", True)
SQLITE = Style("sqlite", "%Y-%m-%d", False, 1, 0, None, False)
API = Style("api", "%Y-%m-%d", False, True, False, None, False)
#: PostgreSQL COPY text format (ledger tables).
PG_COPY = Style("pg", "%Y-%m-%d", False, "t", "f", "\\N", False)
#: SQLite ledger tables (SQLAlchemy stores Date as ISO text, Boolean as 0/1, money as integer ten-thousandths).
SQLITE_LEDGER = Style("sqlite_ledger", "%Y-%m-%d", False, 1, 0, None, False, scaled_money=True)


def cents_str(cents: int) -> str:
    """Integer cents to a plain decimal string (``4500000`` -> ``"45000.00"``)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def money(values: np.ndarray, style: Style) -> list[str] | list[int]:
    """Integer cents as the style writes money."""
    if style.scaled_money:
        return (values.astype(np.int64) * SCALED_PER_CENT).tolist()
    if style.grouped:
        return [f"{v // 100:,}.{v % 100:02d}" for v in values.tolist()]
    return [f"{v // 100}.{v % 100:02d}" for v in values.tolist()]


def rate(values: np.ndarray) -> list[str]:
    distinct, inverse = np.unique(values, return_inverse=True)
    table = np.array([f"{v // ONE_E4}.{v % ONE_E4:04d}" for v in distinct.tolist()], dtype=object)
    return table[inverse].tolist()


def invoice_refs(ids: np.ndarray) -> list[str]:
    return [WORKED_INVOICE_REF if i == 1 else f"INV-{i:08d}" for i in ids.tolist()]


def payment_refs(ids: np.ndarray) -> list[str]:
    return [f"PMT-{i:08d}" for i in ids.tolist()]


def pg_escape(text: str) -> str:
    """Escape for COPY text format (backslash, tab, newline, carriage return)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class Renderer:
    """Per-universe lookup tables, built lazily per style."""

    def __init__(self, u: Universe) -> None:
        self.u = u
        self._dates: dict[str, np.ndarray] = {}
        self._cust: dict[tuple[str, str], np.ndarray] = {}
        self._vocab: dict[tuple[str, str], np.ndarray] = {}

    # -- building blocks ------------------------------------------------------------------------------------
    def dates(self, ordinals: np.ndarray, style: Style) -> list[object]:
        u = self.u
        key = f"{style.date_format}|{style.null!r}"
        table = self._dates.get(key)
        if table is None:
            days = [
                date.fromordinal(o).strftime(style.date_format) for o in range(u.base_ord, u.as_of_ord + FUTURE_DAYS)
            ]
            table = np.array([*days, style.null], dtype=object)
            self._dates[key] = table
        idx = np.where(ordinals == NO_DATE, table.size - 1, ordinals - u.base_ord)
        return table[idx].tolist()

    def flags(self, mask: np.ndarray, style: Style) -> list[object]:
        return np.array([style.false, style.true], dtype=object)[mask.astype(np.int64)].tolist()

    def ints(self, values: np.ndarray, style: Style, *, zero_is_null: bool = False) -> list[object]:
        out: np.ndarray = values.astype(str).astype(object) if style is PG_COPY else values.astype(object)
        if zero_is_null:
            out = np.where(values == 0, style.null, out)
        return out.tolist()

    def vocab(self, name: str, words: tuple[str | None, ...], idx: np.ndarray, style: Style) -> list[object]:
        key = (name, style.name)
        table = self._vocab.get(key)
        if table is None:
            vals = [style.null if w is None else (pg_escape(w) if style is PG_COPY else w) for w in words]
            table = np.array(vals, dtype=object)
            self._vocab[key] = table
        return table[idx].tolist()

    def customer(self, what: str, cust: np.ndarray, style: Style) -> list[object]:
        """A per-customer attribute: ref, name, parent_ref, entity, currency, segment."""
        key = (what, style.name)
        table = self._cust.get(key)
        if table is None:
            u = self.u
            if what == "ref":
                vals: list[object] = list(u.cust_ref)
            elif what == "name":
                vals = [pg_escape(n) for n in u.cust_name] if style is PG_COPY else list(u.cust_name)
            elif what == "parent_ref":
                vals = [u.cust_ref[p] if p >= 0 else style.null for p in u.parent.tolist()]
            elif what == "entity":
                vals = [ENTITIES[e][0] for e in u.entity.tolist()]
            elif what == "currency":
                vals = [CURRENCIES[c] for c in u.currency.tolist()]
            elif what == "segment":
                vals = [SEGMENTS[s] for s in u.segment.tolist()]
            else:
                raise KeyError(what)
            table = np.array(vals, dtype=object)
            self._cust[key] = table
        return table[cust].tolist()

    # -- canonical rows (source formats) ---------------------------------------------------------------------
    def invoices(self, c: Chunk, s: Style) -> list[list[object]]:
        u = self.u
        cust = c.inv_cust
        return [
            self.customer("entity", cust, s),
            invoice_refs(c.inv_id),
            self.customer("ref", cust, s),
            self.customer("name", cust, s),
            self.customer("parent_ref", cust, s),
            self.customer("segment", cust, s),
            self.dates(c.inv_date, s),
            self.dates(c.due_date, s),
            self.customer("currency", cust, s),
            money(c.amount, s),
            money(c.open_balance, s),
            rate(c.fx_e4),
            self.flags(c.disputed, s),
            self.dates(c.dispute_since, s),
            self.flags(c.payment_plan, s),
            self.flags(u.bankrupt[cust], s),
            self.flags(c.transferred, s),
            self.vocab("description", DESCRIPTION_TABLE, c.description, s),
        ]

    def payments(self, c: Chunk, s: Style) -> list[list[object]]:
        inv_cust = c.inv_cust[c.alloc_local]
        return [
            self.customer("entity", c.pay_cust, s),
            payment_refs(c.pay_id),
            self.customer("ref", c.pay_cust, s),
            self.dates(c.pay_date, s),
            self.customer("currency", inv_cust, s),
            money(c.pay_amount, s),
            invoice_refs(c.alloc_inv),
            money(c.applied, s),
        ]

    def activities(self, c: Chunk, s: Style) -> list[list[object]]:
        if s.erp_vocabulary:
            kind = self.vocab("erp_activity", ERP_ACTIVITY, np.where(c.act_type == 0, c.act_channel, c.act_type + 1), s)
        else:
            kind = self.vocab("activity", ACTIVITY_TYPES, c.act_type, s)
        refs = invoice_refs(c.act_inv)
        inv_ref = [r if i else s.null for r, i in zip(refs, c.act_inv.tolist(), strict=True)]
        return [
            self.customer("entity", c.act_cust, s),
            self.customer("ref", c.act_cust, s),
            inv_ref,
            kind,
            self.dates(c.act_date, s),
            self.dates(c.act_end, s),
            self.vocab("outcome", OUTCOMES, c.act_outcome, s),
        ]

    # -- ledger rows (ids are customer index + 1 and the generator's global sequences) ------------------------
    def ledger_customers(self, s: Style, source: str) -> tuple[tuple[str, ...], list[list[object]]]:
        u = self.u
        cust = np.arange(u.n_customers, dtype=np.int64)
        n = cust.size
        cols = (
            "id",
            "entity_code",
            "customer_ref",
            "name",
            "parent_id",
            "segment",
            "bankruptcy_flag",
            "bankruptcy_date",
            "dissolved",
            "source",
        )
        return cols, [
            self.ints(cust + 1, s),
            self.customer("entity", cust, s),
            self.customer("ref", cust, s),
            self.customer("name", cust, s),
            self.ints(u.parent + 1, s, zero_is_null=True),
            self.customer("segment", cust, s),
            self.flags(u.bankrupt, s),
            self.dates(u.bankruptcy_date, s),
            self.flags(u.dissolved, s),
            [source] * n,
        ]

    def ledger_tables(self, c: Chunk, s: Style, source: str) -> list[LedgerTable]:
        """(table, columns, column values) for every ledger table a chunk feeds, in foreign-key order."""
        return [
            self._invoices_table(c, s, source),
            self._payments_table(c, s, source),
            self._allocations_table(c, s),
            self._activities_table(c, s, source),
            self._holds_table(c, s),
        ]

    def _invoices_table(self, c: Chunk, s: Style, source: str) -> LedgerTable:
        n = c.n_invoices
        status = np.array(["open", "paid"], dtype=object)[(c.open_balance == 0).astype(np.int64)].tolist()
        return (
            "invoices",
            (
                "id",
                "entity_code",
                "invoice_ref",
                "customer_id",
                "source",
                "invoice_date",
                "due_date",
                "currency",
                "amount",
                "open_balance",
                "fx_rate",
                "status",
                "balance_transferred_to_parent",
                "description",
            ),
            [
                self.ints(c.inv_id, s),
                self.customer("entity", c.inv_cust, s),
                invoice_refs(c.inv_id),
                self.ints(c.inv_cust + 1, s),
                [source] * n,
                self.dates(c.inv_date, s),
                self.dates(c.due_date, s),
                self.customer("currency", c.inv_cust, s),
                money(c.amount, s),
                money(c.open_balance, s),
                rate(c.fx_e4),
                status,
                self.flags(c.transferred, s),
                self.vocab("description", DESCRIPTION_TABLE, c.description, s),
            ],
        )

    def _payments_table(self, c: Chunk, s: Style, source: str) -> LedgerTable:
        u = self.u
        first = c.payment_rows
        pay_cur = u.currency[c.inv_cust[c.alloc_local]][first]
        return (
            "payments",
            ("id", "entity_code", "payment_ref", "customer_id", "payment_date", "currency", "amount", "source"),
            [
                self.ints(c.pay_id[first], s),
                self.customer("entity", c.pay_cust[first], s),
                payment_refs(c.pay_id[first]),
                self.ints(c.pay_cust[first] + 1, s),
                self.dates(c.pay_date[first], s),
                [CURRENCIES[i] for i in pay_cur.tolist()],
                money(c.pay_amount[first], s),
                [source] * int(first.sum()),
            ],
        )

    def _allocations_table(self, c: Chunk, s: Style) -> LedgerTable:
        return (
            "payment_allocations",
            ("id", "payment_id", "invoice_id", "amount", "allocated_on", "kind"),
            [
                self.ints(c.alloc_id, s),
                self.ints(c.pay_id, s),
                self.ints(c.alloc_inv, s),
                money(c.applied, s),
                self.dates(c.pay_date, s),
                ["regular"] * c.alloc_id.size,
            ],
        )

    def _activities_table(self, c: Chunk, s: Style, source: str) -> LedgerTable:
        return (
            "collection_activities",
            ("id", "customer_id", "invoice_id", "activity_type", "activity_date", "end_date", "outcome", "source"),
            [
                self.ints(c.act_id, s),
                self.ints(c.act_cust + 1, s),
                self.ints(c.act_inv, s, zero_is_null=True),
                self.vocab("activity", ACTIVITY_TYPES, c.act_type, s),
                self.dates(c.act_date, s),
                self.dates(c.act_end, s),
                self.vocab("outcome", OUTCOMES, c.act_outcome, s),
                [source] * c.act_id.size,
            ],
        )

    def _holds_table(self, c: Chunk, s: Style) -> LedgerTable:
        return (
            "holds",
            ("id", "customer_id", "invoice_id", "hold_type", "start_date", "end_date", "resolution", "note"),
            [
                self.ints(c.hold_id, s),
                self.ints(c.hold_cust + 1, s),
                self.ints(c.hold_inv, s),
                self.vocab("hold_type", HOLD_TYPES, c.hold_type, s),
                self.dates(c.hold_start, s),
                self.dates(c.hold_end, s),
                self.vocab("resolution", RESOLUTIONS, c.hold_resolution, s),
                hold_notes(c.hold_type, c.hold_note),
            ],
        )


def hold_notes(kind: np.ndarray, note: np.ndarray) -> list[str]:
    return [
        DISPUTE_REASONS[x] if t == 0 else f"payment plan: {x} monthly instalments"
        for t, x in zip(kind.tolist(), note.tolist(), strict=True)
    ]
