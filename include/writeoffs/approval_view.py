"""What an approver sees: the batch summary, the full candidate list, and the "what will be posted" text.

Pure domain (no Airflow): the approval DAG's operators call these to fill the Human-in-the-loop subject and
Markdown body, ``scripts/approve.py`` and tests call them directly. Amounts are Decimal throughout and are
printed with the currency's minor unit; nothing here writes to the ledger.

The digest (:func:`items_digest`) fingerprints exactly the rows shown to the approver (invoice, amount,
reason). The operator stores it when the request is opened and compares it when the answer arrives, so an
approval can never silently cover rows that changed in between.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, select

from writeoffs.approvals import batch_hash_of
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_of
from writeoffs.catalogues import REASON_LABELS, RULE_LABELS, label
from writeoffs.db.schema import customers, invoices, writeoff_batches, writeoffs
from writeoffs.errors import ApprovalError, shorten
from writeoffs.money import quantum
from writeoffs.report_store import StorePath
from writeoffs.safe_text import csv_writer, md

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


# --------------------------------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------------------------------- text


def subject(view: BatchView, step: str = "approve") -> str:
    """Tier, amount and entity first: the list of required actions cuts long subjects at the end."""
    items = pending_items(view)
    total = sum((i.amount for i in items), Decimal(0))
    what = "confirm posting of" if step == "confirm" else "approve write-off of"
    return (
        f"{view.tier} tier · {view.fmt(total)} · {view.entity_code} — batch {view.batch_id}: "
        f"{what} {plural(len(items), 'invoice')} (as of {view.as_of_date.isoformat()})"
    )


def deadline_text(deadline: datetime, on_timeout: str) -> str:
    """``2026-11-26 14:00 UTC; no answer by then: <on_timeout>``."""
    return f"{deadline.strftime('%Y-%m-%d %H:%M %Z').strip()}; no answer by then: {on_timeout}"


def refusal_lines(
    *,
    refused: str,
    reason: str,
    step: str,
    tier: str,
    eligible: Sequence[str],
    open_until: str | None = None,
    limit: int = 300,
) -> tuple[str, str, str]:
    """Plain text explaining a refused answer: who was refused and why, whether the request is still open, and who
    may decide. ``reason`` is the ledger's refusal message and may quote input (an exclusion list): it is cut to
    ``limit``; each channel escapes the text for its own markup."""
    who = ", ".join(eligible) or "nobody (the tier has no one left who may decide)"
    why = shorten(reason, limit)
    return (
        f"The {step} answer by {refused or 'unknown'} was not recorded: {why}{'' if why.endswith('.') else '.'}",
        f"The request stays open until {open_until}." if open_until else "No time is left: the step times out.",
        f"Who may decide ({tier} tier): {who}.",
    )


REFUSAL_HEAD = "> **Answer refused.**"


def refusal_markdown(**facts: object) -> str:
    """:func:`refusal_lines` as a Markdown quote block, every part escaped."""
    what, status, who = refusal_lines(**facts)  # type: ignore[arg-type]
    return f"{REFUSAL_HEAD} {_cell(what)}\n>\n> {_cell(status)} {_cell(who)}"


#: Separates a refusal note from the request text it sits on (a Markdown rule).
REFUSAL_RULE = "\n\n---\n\n"


def with_refusal(body: str, block: str) -> str:
    """The request text with the refusal note ``block`` (:func:`refusal_markdown`) at the top, replacing the note of
    an earlier refusal: the latest refusal is what the next answerer needs; every one is in the audit log."""
    if body.startswith(REFUSAL_HEAD) and REFUSAL_RULE in body:
        body = body.split(REFUSAL_RULE, 1)[1]
    return block + REFUSAL_RULE + body


def summary_markdown(
    view: BatchView,
    *,
    top_n: int = DEFAULT_TOP_N,
    candidates_link: str | None = None,
    buckets: Sequence[Bucket] = DEFAULT_BUCKETS,
    limit: Decimal | None = None,
    confirmation: str | None = None,
    answerers: Sequence[str] = (),
    deadline: str | None = None,
) -> str:
    """The approval request body: totals, who decides and by when, breakdowns by reason and aging bucket, and the
    top items with the decisive evidence as fixed columns; ``confirmation`` says who will be asked to confirm after
    an approval (four eyes), ``deadline`` when the request times out and what happens then (:func:`deadline_text`).
    """
    items = pending_items(view)
    total = sum((i.amount for i in items), Decimal(0))
    largest = max((i.amount for i in items), default=Decimal(0))
    out = [
        f"### Write-off batch {view.batch_id} — {view.entity_code} / {view.currency}",
        "",
        "| | |",
        "|---|---|",
        f"| Business date | {view.as_of_date.isoformat()} |",
        f"| Invoices | {len(items)} |",
        f"| Total to write off | **{view.fmt(total)}** |",
        f"| Largest item | {view.fmt(largest)} |",
        f"| Approval tier | {view.tier}" + (f" (limit {view.fmt(limit)} per item)" if limit is not None else "") + " |",
        *([f"| Who may approve | {', '.join(_cell(p) for p in answerers)} |"] if answerers else []),
        *([f"| Answer by | {_cell(deadline)} |"] if deadline else []),
        f"| Prepared by | {_cell(view.prepared_by or 'scheduler')} |",
        *([f"| Then confirmed | {_cell(confirmation)} |"] if confirmation else []),
        f"| Policy | {_cell(view.policy_version)} (`{view.policy_hash[:12]}`) |",
        f"| Batch fingerprint | `{items_digest(items)[:16]}` |",
        "",
        "#### By reason",
        "",
        "| Reason | Invoices | Amount |",
        "|---|---:|---:|",
    ]
    out += [f"| {_cell(reason_label(k))} | {n} | {view.fmt(t)} |" for k, n, t in breakdown(items, "reason_code")]
    out += ["", "#### By aging bucket (days past due)", "", "| Bucket | Invoices | Amount |", "|---|---:|---:|"]
    out += [f"| {k} | {n} | {view.fmt(t)} |" for k, n, t in _bucket_order(breakdown(items, "bucket"), buckets)]
    shown = items[:top_n]
    out += [
        "",
        f"#### Top {len(shown)} of {plural(len(items), 'item')} by amount",
        "",
        "| Invoice | Customer | Amount | Reason | Rule | " + " | ".join(EVIDENCE_COLUMNS) + " |",
        "|---|---|---:|---|---|" + "---:|" * 4 + "---|" * 3,
    ]
    out += [
        f"| {_cell(i.invoice_ref)} | {_cell(i.customer_name)} ({_cell(i.customer_ref)}) | {view.fmt(i.amount)} | "
        f"{_cell(reason_label(i.reason_code))} | {_cell(rule_label(i.rule))} | " + " | ".join(evidence_cells(i)) + " |"
        for i in shown
    ]
    out.append("")
    if candidates_link:
        out.append(f"Full candidate list ({plural(len(items), 'row')}, all evidence): {candidates_link}")
        out.append("")
    out += [
        "**Approve** does not post yet: a second request, **Confirm**, then opens"
        + (f" ({_cell(confirmation)})" if confirmation else "")
        + " and shows exactly what will be posted. **Reject** ends the batch with nothing posted.",
        f"To leave invoices out, pick them in **Exclude invoices** (the {PICK_LIMIT} largest are listed; refs "
        "beyond those can be sent through the REST API). "
        "The *comment* is internal: it is stored with the approval and never shown to customers.",
    ]
    return "\n".join(out)


def confirmation_markdown(
    view: BatchView,
    excluded_refs: Sequence[str] = (),
    *,
    approved_by: str | None = None,
    debit_account: str | None = None,
    credit_account: str | None = None,
    candidates_link: str | None = None,
    max_rows: int = CONFIRM_LIST_MAX,
    answerers: Sequence[str] = (),
    deadline: str | None = None,
) -> str:
    """The confirmation body: exactly the items that will be posted after exclusions, and the entry's totals."""
    # After the approve step the excluded items carry status 'excluded'; before it only the refs say so.
    excluded = [i for i in view.items if i.invoice_ref in set(excluded_refs) or i.status == "excluded"]
    posting = to_post(view, excluded_refs)
    total = sum((i.amount for i in posting), Decimal(0))
    dr = debit_account or "Bad Debt Expense (or Allowance, by the entity's method)"
    cr = credit_account or "Accounts Receivable"
    out = [
        f"### Confirm: post write-off batch {view.batch_id} — {view.entity_code} / {view.currency}",
        "",
        f"Approved by **{_cell(approved_by or '?')}** at tier {view.tier}. Confirming posts the entries below "
        "to the ledger, dated the business date "
        f"{view.as_of_date.isoformat()}; **Reject** ends the batch with nothing posted.",
        "",
        "| | |",
        "|---|---|",
        *([f"| Who may confirm | {', '.join(_cell(p) for p in answerers)} |"] if answerers else []),
        *([f"| Answer by | {_cell(deadline)} |"] if deadline else []),
        f"| Invoices to write off | {len(posting)} |",
        f"| Total | **{view.fmt(total)}** |",
        f"| Excluded by the approver | {len(excluded)}"
        + (f" ({view.fmt(sum((i.amount for i in excluded), Decimal(0)))})" if excluded else "")
        + " |",
        f"| Fingerprint of the posted set | `{items_digest(posting)[:16]}` |",
        "",
        f"Journal: Dr {dr} {view.fmt(total)} / Cr {cr} {view.fmt(total)} "
        f"(one balanced entry per invoice, linked to it).",
        "",
        "| Invoice | Customer | Amount | Reason |",
        "|---|---|---:|---|",
    ]
    out += [
        f"| {_cell(i.invoice_ref)} | {_cell(i.customer_name)} | {view.fmt(i.amount)} | "
        f"{_cell(reason_label(i.reason_code))} |"
        for i in posting[:max_rows]
    ]
    if len(posting) > max_rows:
        out.append(f"| … {len(posting) - max_rows} more | | | |")
    if excluded:
        out += ["", "Excluded (not posted): " + ", ".join(_cell(i.invoice_ref) for i in excluded)]
    if candidates_link:
        out += ["", f"Full candidate list: {candidates_link}"]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------- CSV


CSV_COLUMNS = (
    "batch_id",
    "invoice_ref",
    "customer_ref",
    "customer_name",
    "currency",
    "amount",
    "days_past_due",
    "bucket",
    "reason_code",
    "rule",
    "status",
    "evidence",
)


def candidates_csv_path(reports_dir: StorePath, view: BatchView) -> StorePath:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", view.batch_key)
    return reports_dir / "batches" / f"batch_{view.batch_id}_{safe}.csv"


def write_candidates_csv(reports_dir: StorePath, view: BatchView) -> StorePath:
    """Every item of the batch (including already-excluded ones, with their status); written atomically."""
    path = candidates_csv_path(reports_dir, view)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv_writer(fh)  # formula-looking text neutralised (writeoffs.safe_text)
        w.writerow(CSV_COLUMNS)
        for i in view.items:
            w.writerow(
                [
                    view.batch_id,
                    i.invoice_ref,
                    i.customer_ref,
                    i.customer_name,
                    view.currency,
                    format(i.amount, "f"),
                    i.days_past_due,
                    i.bucket,
                    i.reason_code,
                    i.rule,
                    i.status,
                    json.dumps(i.evidence, sort_keys=True, default=str),
                ]
            )
    tmp.replace(path)
    return path
