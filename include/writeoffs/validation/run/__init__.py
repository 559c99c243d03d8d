"""Validate staged ingest batches and the aging snapshot: evaluate, gate, quarantine, record.

Order of work, and why:
1. The rows offending each row-level check are found set-wise in SQL, once, into a temporary table
   (:mod:`writeoffs.validation.sqlpass`: one scan per dataset for the row-local predicates, one hash join per
   set-wise one). GX then evaluates the checks in the database and writes the Data Docs: every check for a small
   target; for a target of ``fast_path_min_rows`` rows or more only the structural and batch-level ones, the
   row-level results being built from the SQL counts (one scan instead of one per expectation).
2. Any failed ``blocking`` check: the run is recorded in ``validation_runs`` and :class:`ValidationBlocked` is
   raised; nothing is quarantined (the batch is rejected as a whole, its rows stay staged for inspection).
3. Otherwise the rows offending ``warning`` checks are copied from the temporary table to ``ingest_quarantine``
   with the check's rule name as ``reason`` (the rows the very predicate the GX expectation was built from
   selected), deleted from staging, and the batch's accepted/quarantined counts are adjusted so the merge's
   staged-row check still holds. If that would remove more than ``max_quarantined_fraction`` of a batch's rows,
   the run blocks instead.
Steps 1–3 run in one transaction with the ``validation_runs`` rows, so a retried task never half-quarantines.

Submodules:

- :mod:`.batches` — :func:`validate_batches`, the gate for ingest batches (steps 1–3 above).
- :mod:`.aging` — :func:`validate_aging` and :func:`tie_out_breaks`, the gate for the aging snapshot.
- :mod:`.plan` — scopes of a batch with its control totals, the checks planned per target, findings from outcomes.
- :mod:`.quarantine` — warning rows moved to ``ingest_quarantine`` under the share guard; batch counts adjusted.
- :mod:`.record` — ``validation_runs`` rows and :func:`publish_docs` (the Data Docs site to the reports store).
- :mod:`.report` — :class:`Finding`, :class:`TargetResult`, :class:`ValidationReport`, :class:`ValidationBlocked`.
"""

from writeoffs.validation.run.aging import tie_out_breaks, validate_aging
from writeoffs.validation.run.batches import validate_batches
from writeoffs.validation.run.record import publish_docs
from writeoffs.validation.run.report import Finding, TargetResult, ValidationBlocked, ValidationReport

__all__ = [
    "Finding",
    "TargetResult",
    "ValidationBlocked",
    "ValidationReport",
    "publish_docs",
    "tie_out_breaks",
    "validate_aging",
    "validate_batches",
]
