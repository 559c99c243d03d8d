"""Fixed catalogues that people choose from or read in the Airflow UI (DAG params, forms, approval requests).

Plain data, no imports: DAG files read these at parse time to offer the choices, and the ledger layer checks
every value against the same catalogue (a value that is not listed is refused, whoever sends it). The labels are
the one home of the plain-language names people read for reason and rule codes.
"""

from __future__ import annotations

#: Why a posted write-off may be undone (free text goes in the request's ``note``).
REVERSAL_REASONS: dict[str, str] = {
    "posted_in_error": "posted by mistake (wrong invoice, amount or period)",
    "duplicate": "duplicates another write-off of the same receivable",
    "dispute_resolved": "a dispute or insolvency was resolved: the receivable is collectible again",
    "approval_defect": "the approval was found defective on review (audit finding)",
    "policy_misapplied": "the policy was applied wrongly to this invoice",
}

#: What a person reads for a write-off reason code (the closed catalogue of ``writeoffs.policy.schema.Reason``).
REASON_LABELS: dict[str, str] = {
    "uncollectible_after_collections": "Uncollectible after collections",
    "bankruptcy": "Customer bankrupt",
    "customer_dissolved": "Customer dissolved",
    "small_balance": "Small balance",
    "settlement_remainder": "Settlement remainder",
    "dispute_lost": "Dispute lost",
    "statute_expired": "Statute of limitations expired",
}

#: What a person reads for the policy rule that fired (routes, exclusions and shortfalls of
#: ``writeoffs.policy.selection``): the approver sees these, the ledger and CSV keep the identifiers.
RULE_LABELS: dict[str, str] = {
    # routes (why the invoice is a candidate)
    "dispute_resolved_lost": "a dispute was lost and the invoice is old enough",
    "settlement_remainder": "remainder after a settlement, old enough",
    "customer_bankrupt": "customer bankrupt, invoice old enough",
    "customer_dissolved": "customer dissolved, invoice old enough",
    "statute_days_exceeded": "older than the statute of limitations",
    "small_balance_aged": "small balance, old enough",
    "aged_and_collections_exhausted": "past the write-off age, collection effort exhausted",
    # exclusions (why a candidate is held back)
    "reversed_hold": "write-off reversed recently: on hold",
    "open_dispute": "open dispute",
    "active_payment_plan": "active payment plan",
    "parent_paid_transferred": "parent paid part of the transferred balance",
    "child_partial": "child account: only the full invoice may be written off",
    "partial_not_allowed": "partial write-off not allowed",
    "recent_payment": "paid recently",
    # shortfalls (why an invoice is not eligible)
    "under_threshold": "not old enough",
    "insufficient_attempts": "too few contact attempts",
    "insufficient_letters": "too few demand letters",
    "insufficient_agency_days": "too short at a collection agency",
    "legal_action_required": "legal action required first",
}


def label(catalogue: dict[str, str], code: object) -> str:
    """The plain-language label of ``code``; an unknown code is shown as itself (never hidden, never guessed)."""
    text = "" if code is None else str(code)
    return catalogue.get(text, text or "-")
