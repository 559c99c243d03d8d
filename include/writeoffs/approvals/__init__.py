"""Approval records for write-off batches: segregation of duties enforced server-side, re-verified at posting.

The approvals UI (a human-in-the-loop DAG) only *collects* decisions; this module decides whether a decision may
be recorded, and :func:`verify_batch_approval` re-checks everything again when the batch is posted, so that a
batch whose status was flipped by raw SQL, or whose items changed after approval, is never posted.

Two steps per batch (the billing system's "review, then finalise"): ``approve`` (decision approved | rejected |
expired | escalated) then ``confirm`` (confirmed | rejected | expired). The approve step is answered by one of the
tier's approvers, the confirm step by one of its confirmers (:meth:`Tier.answerers`); never by the batch's preparer
nor by whoever triggered the approval run that routed it (``routed_by``). Four eyes: above the tier's
``four_eyes_above`` amount (every amount for a currency it does not list) the confirmer must be a different person
than the approver; below it, the same person may finalise their own review. Limits: the tier's item and batch
limits and every narrower limit for a reason, segment or the deciding user (:meth:`Tier.problem_for`, most
restrictive wins). ``escalated`` (approve step only) writes no row: it moves the batch to the next tier, whose
approver then records the approve step. One ``approvals`` row per (batch, step).

Batch hash: ``sha256`` over the sorted lines ``invoice_ref \\x1f amount \\x1f reason_code`` (amount at the
ledger's scale of 4 decimals, e.g. ``45000.0000``), lines joined with ``\\n``; see :func:`batch_hash_of`. The policy
computes it over all items at proposal (``writeoff_batches.batch_hash``); each approval row stores the hash over the
items that remain after that step's exclusions; posting recomputes it from the items that are not ``excluded``.

Refused attempts: the decision is not recorded, but the attempt is audited in a *separate* transaction on a
separate connection, committed before the error is raised. The caller's transaction is usually rolled back by the
exception; an auditor must still see that someone tried to approve their own batch. Consequence for callers: call
:func:`record_decision` in a transaction of its own (``with engine.begin() as conn``) that has not written yet,
otherwise on SQLite the audit connection waits for the caller's write lock.

Submodules: :mod:`.items` (the batch's current items and the batch hash), :mod:`.rules` (steps, decisions, who may
answer, four eyes, the governing tiers), :mod:`.record` (recording or refusing a decision, escalation to an entitled
tier), :mod:`.auto` (auto-approval under the small-balance tolerance), :mod:`.verify` (re-verification at posting),
:mod:`.runs` (the batches an approval run claims, and the auto-tier batches it posts).
"""

from __future__ import annotations

from writeoffs.approvals.auto import auto_approve
from writeoffs.approvals.items import batch_hash_of, current_item_rows, current_items, limit_items
from writeoffs.approvals.record import audit_refusal, record_decision, route_to_entitled_tier
from writeoffs.approvals.rules import (
    DECISIONS,
    GRANTING,
    HUMAN,
    OPEN_FOR,
    STEPS,
    eligible_answerers,
    governing_tiers,
)
from writeoffs.approvals.verify import ApprovalSummary, verify_batch_approval

__all__ = [
    "DECISIONS",
    "GRANTING",
    "HUMAN",
    "OPEN_FOR",
    "STEPS",
    "ApprovalSummary",
    "audit_refusal",
    "auto_approve",
    "batch_hash_of",
    "current_item_rows",
    "current_items",
    "eligible_answerers",
    "governing_tiers",
    "limit_items",
    "record_decision",
    "route_to_entitled_tier",
    "verify_batch_approval",
]
