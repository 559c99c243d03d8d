"""The texts of an approval request: subject, deadline, refusals, the summary and confirmation Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from writeoffs.approval_view.items import (
    EVIDENCE_COLUMNS,
    PICK_LIMIT,
    _bucket_order,
    _cell,
    breakdown,
    evidence_cells,
    items_digest,
    pending_items,
    plural,
    reason_label,
    rule_label,
    to_post,
)
from writeoffs.approval_view.model import CONFIRM_LIST_MAX, DEFAULT_TOP_N, BatchView
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket
from writeoffs.errors import shorten


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
    # Account names come from the ledger's chart: escaped like any other value shown.
    dr = _cell(debit_account or "Bad Debt Expense (or Allowance, by the entity's method)")
    cr = _cell(credit_account or "Accounts Receivable")
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
