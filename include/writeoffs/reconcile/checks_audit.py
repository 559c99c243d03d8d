"""The audit-chain check of the reconciliation: the chain verifies under its key and reaches the checkpoint kept
outside the ledger (the verification itself is ``writeoffs.audit_anchor``'s)."""

from __future__ import annotations

from typing import Any

from writeoffs.audit_anchor import verify_anchored
from writeoffs.reconcile.model import MAX_DOCUMENTS, Break


def check_audit_chain(conn: Any, as_of: Any, tolerance: Any) -> list[Any]:
    """The audit chain verifies with the key and reaches the last checkpoint kept outside the ledger.

    Reads on its own connection, after reading the checkpoint (``writeoffs.audit_anchor.verify_anchored``): a
    posting that commits during the run must not look like a truncated tail. No checkpoint while the ledger has
    audit rows, or no key, is a break (fail closed), never a skip.
    """
    findings = verify_anchored(conn.engine)
    if not findings:
        return []
    first = findings[0]
    return [
        Break(
            check="audit_chain",
            message=f"audit chain broken or not anchored: row {first.row_id}: {first.problem}"
            + (f" (+{len(findings) - 1} more finding(s))" if len(findings) > 1 else ""),
            documents=tuple({"row_id": f.row_id, "problem": f.problem} for f in findings[:MAX_DOCUMENTS]),
        )
    ]
