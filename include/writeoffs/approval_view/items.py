"""Helpers over a view's items: the digest, picks and exclusions, breakdowns, labels, evidence cells."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

from writeoffs.approval_view.model import NOT_POSTED_STATUSES, BatchItem, BatchView
from writeoffs.approvals import batch_hash_of
from writeoffs.buckets import Bucket
from writeoffs.catalogues import REASON_LABELS, RULE_LABELS, label
from writeoffs.errors import shorten
from writeoffs.safe_text import md


def items_digest(items: Iterable[BatchItem]) -> str:
    """sha256 over (invoice, amount, reason) of the given items, order-independent.

    The same definition as the approvals' batch hash, so the fingerprint an approver reads in the request is
    the prefix of the hash recorded with their decision.
    """
    return batch_hash_of((i.invoice_ref, i.amount, i.reason_code) for i in items)


def pending_items(view: BatchView) -> tuple[BatchItem, ...]:
    """Items still in play (shown for approval): everything not already left out."""
    return tuple(i for i in view.items if i.status not in NOT_POSTED_STATUSES)


def parse_invoice_refs(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Invoice refs typed by an approver: comma, semicolon, space or newline separated; order kept, deduplicated."""
    if text is None:
        return ()
    parts = re.split(r"[\s,;]+", text) if isinstance(text, str) else [str(p).strip() for p in text]
    seen: dict[str, None] = {}
    for p in parts:
        if p:
            seen.setdefault(p, None)
    return tuple(seen)


#: How many items the approval form offers to pick for exclusion (largest first). A bigger batch keeps its full list
#: in the candidates CSV; further refs can still be typed in the same field through the REST API
#: (``scripts/approve.py --exclude``).
PICK_LIMIT = 500


def exclusion_choices(view: BatchView, limit: int = PICK_LIMIT) -> dict[str, str]:
    """The items an approver can pick to leave out, largest first: invoice ref -> one-line label.

    The label is what the form shows (ref, customer, amount, days past due, reason); refs and names come from
    source systems, so they are cut to a readable length (React escapes them on screen).
    """
    from writeoffs.errors import shorten

    items = sorted(pending_items(view), key=lambda i: (-i.amount, i.invoice_ref))[:limit]
    return {
        i.invoice_ref: (
            f"{shorten(i.invoice_ref, 40)} · {shorten(i.customer_name or i.customer_ref, 40)} · "
            f"{view.fmt(i.amount)} · {i.days_past_due} days past due · {i.reason_code}"
        )
        for i in items
    }


def to_post(view: BatchView, excluded_refs: Sequence[str] = ()) -> tuple[BatchItem, ...]:
    excluded = set(excluded_refs)
    return tuple(i for i in pending_items(view) if i.invoice_ref not in excluded)


def breakdown(items: Iterable[BatchItem], key: str) -> list[tuple[str, int, Decimal]]:
    """(label, count, total) per ``key`` ('reason_code' or 'bucket'), largest total first."""
    acc: dict[str, tuple[int, Decimal]] = {}
    for i in items:
        label = str(getattr(i, key))
        n, t = acc.get(label, (0, Decimal(0)))
        acc[label] = (n + 1, t + i.amount)
    return sorted(((k, n, t) for k, (n, t) in acc.items()), key=lambda r: (-r[2], r[0]))


def _bucket_order(rows: list[tuple[str, int, Decimal]], buckets: Sequence[Bucket]) -> list[tuple[str, int, Decimal]]:
    order = {b.label: n for n, b in enumerate(buckets)}
    return sorted(rows, key=lambda r: order.get(r[0], len(order)))


def _cell(text: object) -> str:
    # Customer data in Markdown renders literally: no table breaks, links, images or code-span breakouts.
    return md(text)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 invoice``, ``2 invoices``."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def reason_label(code: object) -> str:
    return label(REASON_LABELS, code)


def rule_label(code: object) -> str:
    return label(RULE_LABELS, code)


#: Evidence values are cut to this many characters in a table cell (the CSV has them whole).
EVIDENCE_CELL_MAX = 40
#: The decisive evidence, as fixed columns of the top-items table, in the order an approver weighs it.
EVIDENCE_COLUMNS = (
    "Days past due",
    "Contact attempts",
    "Demand letters",
    "Agency days",
    "Last payment",
    "Disputes",
    "Bankruptcy",
)


def _ev(value: object) -> str:
    return _cell(shorten(str(value), EVIDENCE_CELL_MAX))


def _with_minimum(evidence: dict[str, object], key: str, minimum_key: str) -> str:
    value = evidence.get(key)
    if value is None:
        return "-"
    required = evidence.get("required")
    minimum = required.get(minimum_key) if isinstance(required, dict) else None
    return _ev(value) + (f" (min {_ev(minimum)})" if minimum is not None else "")


def _yes(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def evidence_cells(item: BatchItem) -> list[str]:
    """One cell per :data:`EVIDENCE_COLUMNS`, Markdown-safe; ``-`` where the evidence does not say."""
    ev = item.evidence
    disputes = ev.get("disputes")
    if disputes is None:
        dispute_cell = "-"
    else:
        notes = [f"{_ev(ev['disputes_lost'])} lost"] if ev.get("disputes_lost") not in (None, 0, "0") else []
        if _yes(ev.get("open_dispute")):
            notes.append("one open")
        dispute_cell = _ev(disputes) + (f" ({', '.join(notes)})" if notes else "")
    if "bankrupt" not in ev:
        bankruptcy = "-"
    elif _yes(ev.get("bankrupt")):
        bankruptcy = "yes" + (f", {_ev(ev['bankruptcy_date'])}" if ev.get("bankruptcy_date") else "")
    else:
        bankruptcy = "no"
    return [
        str(item.days_past_due),
        _with_minimum(ev, "contact_attempts", "min_contact_attempts"),
        _with_minimum(ev, "demand_letters", "min_demand_letters"),
        _with_minimum(ev, "agency_days", "min_agency_days"),
        _ev(ev["last_payment_date"]) if ev.get("last_payment_date") else ("none" if "last_payment_date" in ev else "-"),
        dispute_cell,
        bankruptcy,
    ]
