"""Fixed catalogues that people choose from in the Airflow UI (DAG params, forms).

Plain data, no imports: DAG files read these at parse time to offer the choices, and the ledger layer checks
every value against the same catalogue (a value that is not listed is refused, whoever sends it).
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
