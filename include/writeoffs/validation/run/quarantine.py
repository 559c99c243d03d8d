"""Rows offending ``warning`` checks moved to ``ingest_quarantine``, guarded by the quarantined share, and the
batch's counts adjusted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import Connection, text

from writeoffs.audit import canonical_json
from writeoffs.db.money import from_db_or_zero
from writeoffs.errors import WriteoffError
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.run.plan import _Target
from writeoffs.validation.run.report import Finding, ValidationReport
from writeoffs.validation.sqlpass import BadRows


def _adjust_batch_counts(conn: Connection, batch_id: int, moved: dict[str, int]) -> None:
    """Keep ``ingest_batches`` consistent (accepted + quarantined == read) after rows left staging."""
    from writeoffs.ingest.tables import STAGING

    details = json.loads(
        conn.execute(text("SELECT details FROM ingest_batches WHERE id = :b"), {"b": batch_id}).scalar_one() or "{}",
        parse_float=Decimal,
    )
    total_moved = 0
    for dataset, n in moved.items():
        if not n:
            continue
        total_moved += n
        d = details.setdefault(dataset, {})
        totals = d.get("totals") or {}
        cols = list(totals)
        # One scan per dataset: the staged count and every recorded total.
        sums = "".join(f", COALESCE(SUM({c}), 0)" for c in cols)
        row = conn.execute(
            text(f"SELECT COUNT(*){sums} FROM {STAGING[dataset].name} WHERE batch_id = :b"), {"b": batch_id}
        ).one()
        d["accepted"] = int(row[0])
        d["quarantined"] = int(d.get("quarantined", 0)) + n
        for i, c in enumerate(cols):
            totals[c] = from_db_or_zero(conn, row[i + 1]).quantize(Decimal("0.0001"))
    if total_moved:
        conn.execute(
            text(
                "UPDATE ingest_batches SET rows_accepted = rows_accepted - :n,"
                " rows_quarantined = rows_quarantined + :n, details = :details WHERE id = :b"
            ),
            {"n": total_moved, "details": canonical_json(details), "b": batch_id},
        )


def _quarantine_warnings(
    conn: Connection, bad: BadRows, report: ValidationReport, targets: list[_Target], cfg: ValidationConfig
) -> None:
    # Pass 1 measures every target before anything moves: if one batch trips the share guard the whole run is
    # rejected and no batch is half-quarantined. The share counts every row of the batch the source delivered:
    # rows already quarantined at ingest (unparsable values, wrong field count) plus rows offending warnings, so
    # a feed that is 100 % bad is blocked, not "accepted" with nothing in it.
    work = []
    for result, t in zip(report.targets, targets, strict=True):
        failed = {f.check for f in result.findings if not f.success and f.severity == "warning"}
        warnings = [c for c, _ in t.row_checks if c.name in failed]
        if warnings and t.counts is None:  # the predicates could not run, yet no blocking structural check failed
            raise WriteoffError(f"{t.suite}: warnings {sorted(failed)} failed but their rows cannot be selected")
        n_bad = bad.distinct_rows(t.no, [c.rule_name for c in warnings]) if warnings else 0
        staged = t.counts.rows if t.counts is not None else max(t.read - t.quarantined_before, 0)
        total = max(t.read, staged + t.quarantined_before)
        refused = n_bad + t.quarantined_before
        if total and refused and Decimal(refused) / Decimal(total) > cfg.max_quarantined_fraction:
            result.findings.append(
                Finding(
                    check=f"{t.scope.dataset}.quarantine_share",
                    severity="blocking",
                    success=False,
                    evaluated=1,
                    failed=1,
                    unexpected_count=refused,
                    observed=(
                        f"{refused} of {total} rows refused ({t.quarantined_before} at ingest, {n_bad} by warning"
                        f" checks); accepted share below {1 - cfg.max_quarantined_fraction}"
                        f" (max_quarantined_fraction {cfg.max_quarantined_fraction})"
                    ),
                )
            )
        if warnings:
            work.append((result, t, warnings, n_bad))
    if report.blocking:
        return
    moved_by_batch: dict[int, dict[str, int]] = defaultdict(dict)
    for result, t, warnings, n_bad in work:
        per_reason = bad.quarantine(t.no, t.scope, warnings)
        result.findings = [
            Finding(**{**f.as_dict(), "quarantined": per_reason.get(f.check.split(".", 1)[1], 0)})
            for f in result.findings
        ]
        result.rows_quarantined = n_bad
        assert t.scope.batch_id is not None
        moved_by_batch[t.scope.batch_id][t.scope.dataset] = n_bad
    for _, t, warnings, _ in work:
        bad.remove(t.no, t.scope, [c.rule_name for c in warnings])
    for batch_id, moved in moved_by_batch.items():
        _adjust_batch_counts(conn, batch_id, moved)
