"""Entry point for ingest batches: :func:`validate_batches`."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, text

from writeoffs.errors import WriteoffError
from writeoffs.report_store import StorePath
from writeoffs.validation.checks import STAGED, Tables
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.config import load as load_config
from writeoffs.validation.run.plan import _batch_scopes, _findings, _plan, _Target
from writeoffs.validation.run.quarantine import _quarantine_warnings
from writeoffs.validation.run.record import _docs_dir, _record, publish_docs
from writeoffs.validation.run.report import Finding, TargetResult, ValidationBlocked, ValidationReport, _log, log
from writeoffs.validation.sqlpass import BadRows, analyze_if_stale


def validate_batches(
    engine: Engine,
    batch_ids: Sequence[int],
    *,
    as_of: date,
    run_key: str,
    config: ValidationConfig | None = None,
    tables: Tables = Tables(),
    reports: StorePath | None = None,
) -> ValidationReport:
    """Validate the staged datasets of ``batch_ids``; quarantine warnings; raise :class:`ValidationBlocked`."""
    from writeoffs.validation.gx import prewarm, run_suites

    cfg = config or load_config()
    ids = sorted(set(batch_ids))
    gx_import = prewarm()  # overlaps the SQL pass below
    with engine.begin() as conn:
        # Its own short transaction: ANALYZE holds a lock on the table until commit.
        analyzed = analyze_if_stale(conn, [tables.of(ds) for ds in STAGED] if ids else [])
    if analyzed:
        log.info("analyzed %s (statistics older than most of their rows)", ", ".join(analyzed))
    with engine.begin() as conn:
        targets = _targets(conn, ids, as_of, cfg, tables)
        bad = _collect_bad_rows(conn, targets)

        gx_import.join()
        started = time.perf_counter()
        gx_targets = [
            (t.scope, t.suite, t.planned, t.counts if t.counts and t.counts.rows >= cfg.fast_path_min_rows else None)
            for t in targets
        ]
        docs = _docs_dir(cfg, as_of, run_key)
        outcomes, index = run_suites(engine, gx_targets, run_name=run_key, docs_dir=docs) if targets else ([], None)
        if targets:
            publish_docs(docs, cfg, reports)
        log.info("GX evaluated %d target(s) in %.2f s", len(targets), time.perf_counter() - started)
        report = ValidationReport(run_key, as_of, _results(targets, outcomes, run_key), str(index) if index else None)
        started = time.perf_counter()
        if not report.blocking:
            _quarantine_warnings(conn, bad, report, targets, cfg)
        _record(conn, report)
        bad.drop()
        log.info("quarantine and bookkeeping in %.2f s", time.perf_counter() - started)
    _log(report)
    if report.blocking:
        raise ValidationBlocked(report)
    return report


def _targets(conn: Connection, ids: list[int], as_of: date, cfg: ValidationConfig, tables: Tables) -> list[_Target]:
    """One target per staged dataset of each batch, its checks planned and its ingest counts attached."""
    targets: list[_Target] = []
    for batch_id in ids:
        source, scopes = _batch_scopes(conn, batch_id, as_of, cfg, tables)
        ingest_counts = _ingest_counts(conn, batch_id)
        for scope, notes in scopes:
            planned, skipped = _plan(scope, cfg, notes)
            targets.append(
                _Target(len(targets), scope, source, f"{scope.dataset}__{source}__b{batch_id}", planned, skipped)
            )
            targets[-1].read, targets[-1].quarantined_before = ingest_counts.get(scope.dataset, (0, 0))
    return targets


def _collect_bad_rows(conn: Connection, targets: list[_Target]) -> BadRows:
    """Step 1's SQL pass: the rows offending each target's row-level checks, counted (``t.counts``) where it can run."""
    started = time.perf_counter()
    bad = BadRows(conn)
    for t in targets:
        problem = bad.collect(t.no, t.scope, t.row_checks)
        if problem is None:
            t.counts = bad.counts(t.no, t.scope, t.row_checks)
        else:
            log.warning("%s: row-level checks cannot run in SQL (%s); GX evaluates the target", t.suite, problem)
    log.info("row-level checks of %d target(s) counted in SQL in %.2f s", len(targets), time.perf_counter() - started)
    return bad


def _results(targets: list[_Target], outcomes: Sequence[Any], run_key: str) -> list[TargetResult]:
    """Each target's GX outcome as findings, checked against the SQL counts."""
    results = []
    for t, outcome in zip(targets, outcomes, strict=True):
        findings = _findings(outcome.expectations)
        _check_agreement(t, findings)
        results.append(
            TargetResult(
                suite=t.scope.dataset,
                run_key=f"{run_key}:{t.source}",
                source=t.source,
                batch_id=t.scope.batch_id,
                findings=findings,
                skipped=t.skipped,
                report_path=outcome.report_page,
            )
        )
    return results


def _check_agreement(t: _Target, findings: list[Finding]) -> None:
    """GX's count (small targets) and the predicate's rows must agree, or the quarantine would not match the report.

    They are built from one rule and tested to agree; a disagreement here is a bug (a rule rendered differently by
    GX on some data), and the run refuses to quarantine by a count it cannot explain.
    """
    if t.counts is None:
        return
    for f in findings:
        sql = t.counts.offending.get(f.check)
        if sql is not None and f.error is None and f.unexpected_count is not None and f.unexpected_count != sql:
            raise WriteoffError(
                f"validation {f.check}: GX counted {f.unexpected_count} offending rows, its SQL predicate selects {sql}"
            )


def _ingest_counts(conn: Connection, batch_id: int) -> dict[str, tuple[int, int]]:
    """Per dataset: (records read by staging, rows in ingest_quarantine) for the share guard."""
    row = conn.execute(text("SELECT details FROM ingest_batches WHERE id = :b"), {"b": batch_id}).first()
    details = json.loads(row.details) if row is not None and row.details else {}
    quarantined = dict(
        conn.execute(
            text("SELECT dataset, COUNT(*) FROM ingest_quarantine WHERE batch_id = :b GROUP BY dataset"),
            {"b": batch_id},
        ).all()
    )
    out = {}
    for dataset, d in details.items():
        if isinstance(d, dict) and isinstance(d.get("read"), int):
            # Filtered rows (the mapping's keep_if) are not refusals: the share is measured on the rows kept.
            out[dataset] = (int(d["read"]) - int(d.get("filtered", 0)), int(quarantined.get(dataset, 0)))
    return out
