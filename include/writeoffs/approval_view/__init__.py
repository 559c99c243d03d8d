"""What an approver sees: the batch summary, the full candidate list, and the "what will be posted" text.

Pure domain (no Airflow): the approval DAG's operators call these to fill the Human-in-the-loop subject and
Markdown body, ``scripts/approve.py`` and tests call them directly. Amounts are Decimal throughout and are
printed with the currency's minor unit; nothing here writes to the ledger.

The digest (:func:`items_digest`) fingerprints exactly the rows shown to the approver (invoice, amount,
reason). The operator stores it when the request is opened and compares it when the answer arrives, so an
approval can never silently cover rows that changed in between.

Submodules: :mod:`.model` (the view and its items), :mod:`.load` (reading a batch's view from the ledger),
:mod:`.items` (digest, picks, breakdowns, labels, evidence cells), :mod:`.text` (subject, refusals, the summary and
confirmation Markdown), :mod:`.export` (the candidate list as CSV).
"""

from __future__ import annotations

from writeoffs.approval_view.export import CSV_COLUMNS, candidates_csv_path, write_candidates_csv
from writeoffs.approval_view.items import (
    EVIDENCE_CELL_MAX,
    EVIDENCE_COLUMNS,
    PICK_LIMIT,
    _cell,
    breakdown,
    evidence_cells,
    exclusion_choices,
    items_digest,
    parse_invoice_refs,
    pending_items,
    plural,
    reason_label,
    rule_label,
    to_post,
)
from writeoffs.approval_view.load import ITEM_COLUMNS, item_of, items_source, load_batch_view
from writeoffs.approval_view.model import CONFIRM_LIST_MAX, DEFAULT_TOP_N, NOT_POSTED_STATUSES, BatchItem, BatchView
from writeoffs.approval_view.text import (
    REFUSAL_HEAD,
    REFUSAL_RULE,
    confirmation_markdown,
    deadline_text,
    refusal_lines,
    refusal_markdown,
    subject,
    summary_markdown,
    with_refusal,
)

__all__ = [
    "CONFIRM_LIST_MAX",
    "CSV_COLUMNS",
    "DEFAULT_TOP_N",
    "EVIDENCE_CELL_MAX",
    "EVIDENCE_COLUMNS",
    "ITEM_COLUMNS",
    "NOT_POSTED_STATUSES",
    "PICK_LIMIT",
    "REFUSAL_HEAD",
    "REFUSAL_RULE",
    "BatchItem",
    "BatchView",
    "_cell",
    "breakdown",
    "candidates_csv_path",
    "confirmation_markdown",
    "deadline_text",
    "evidence_cells",
    "exclusion_choices",
    "item_of",
    "items_digest",
    "items_source",
    "load_batch_view",
    "parse_invoice_refs",
    "pending_items",
    "plural",
    "reason_label",
    "refusal_lines",
    "refusal_markdown",
    "rule_label",
    "subject",
    "summary_markdown",
    "to_post",
    "with_refusal",
    "write_candidates_csv",
]
