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
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from writeoffs.audit import canonical_json
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, make_buckets
from writeoffs.db.money import from_db_or_zero, to_db
from writeoffs.errors import ConfigError, WriteoffError
from writeoffs.report_store import StorePath
from writeoffs.validation.checks import STAGED, Check, Scope, Tables, TieOut, checks_for
from writeoffs.validation.config import Severity, ValidationConfig
from writeoffs.validation.config import load as load_config
from writeoffs.validation.sqlpass import BadRows, RowCounts, analyze_if_stale

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    success: bool
    evaluated: int  # GX expectations behind the check (column_types has one per column)
    failed: int
    unexpected_count: int | None
    observed: str | None
    error: str | None = None
    quarantined: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class TargetResult:
    suite: str  # dataset: invoices | payments | activities | aging
    run_key: str
    source: str | None
    batch_id: int | None
    findings: list[Finding]
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it was not applicable
    rows_quarantined: int = 0
    report_path: str | None = None

    @property
    def evaluated(self) -> int:
        return sum(f.evaluated for f in self.findings)

    @property
    def failed(self) -> int:
        return sum(f.failed for f in self.findings)

    @property
    def blocking_failed(self) -> int:
        return sum(f.failed for f in self.findings if f.severity == "blocking")

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "source": self.source,
            "batch_id": self.batch_id,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "blocking_failed": self.blocking_failed,
            "rows_quarantined": self.rows_quarantined,
            "report": self.report_path,
            "failures": [f.check for f in self.findings if not f.success],
            "skipped": self.skipped,
        }


@dataclass(slots=True)
class ValidationReport:
    run_key: str
    as_of: date
    targets: list[TargetResult]
    docs_index: str | None

    @property
    def blocking(self) -> list[tuple[TargetResult, Finding]]:
        return [(t, f) for t in self.targets for f in t.findings if not f.success and f.severity == "blocking"]

    def summary(self) -> dict[str, Any]:
        """JSON-safe (XCom): counts per target, the report location, and what blocked."""
        return {
            "run_key": self.run_key,
            "as_of": self.as_of.isoformat(),
            "report": self.docs_index,
            "evaluated": sum(t.evaluated for t in self.targets),
            "failed": sum(t.failed for t in self.targets),
            "blocking_failed": sum(t.blocking_failed for t in self.targets),
            "rows_quarantined": sum(t.rows_quarantined for t in self.targets),
            "targets": [t.summary() for t in self.targets],
        }


class ValidationBlocked(WriteoffError):
    """A blocking check failed: nothing downstream may use this data. Carries the full report."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        parts = []
        for t, f in report.blocking:
            where = f"{t.source or 'ledger'}/{t.suite}"
            what = f.error or (
                f"{f.unexpected_count} offending"
                if f.unexpected_count is not None and not f.check.endswith(".quarantine_share")
                else f.observed
            )
            parts.append(f"{where}: {f.check} failed ({what})")
        super().__init__(
            f"validation blocked the run {report.run_key} ({report.as_of}): "
            + "; ".join(parts)
            + (f". Report: {report.docs_index}" if report.docs_index else "")
        )


# --------------------------------------------------------------------------------------------------------------
# planning


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"control total {what} is {value!r}, not a whole number")
    d = Decimal(str(value))
    if d != d.to_integral_value():
        raise ConfigError(f"control total {what} is {value!r}, not a whole number")
    return int(d)


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, (bool, float)) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"control total {what} is {value!r}, not an exact amount")
    return Decimal(str(value))


def _currencies(conn: Connection, tables: Tables) -> tuple[str, ...]:
    return tuple(conn.execute(text(f"SELECT code FROM {tables.currencies} ORDER BY code")).scalars())


def _batch_scopes(
    conn: Connection, batch_id: int, as_of: date, cfg: ValidationConfig, tables: Tables
) -> tuple[str, list[tuple[Scope, dict[str, str]]]]:
    row = conn.execute(
        text("SELECT source, as_of_date, control, details FROM ingest_batches WHERE id = :b"), {"b": batch_id}
    ).first()
    if row is None:
        raise WriteoffError(f"ingest batch {batch_id} does not exist")
    control = json.loads(row.control, parse_float=Decimal) if row.control else None
    details = json.loads(row.details) if row.details else {}
    filtered = {ds: int(d.get("filtered", 0)) for ds, d in details.items() if isinstance(d, dict)}
    ingest_q = dict(
        conn.execute(
            text("SELECT dataset, COUNT(*) FROM ingest_quarantine WHERE batch_id = :b GROUP BY dataset"),
            {"b": batch_id},
        ).all()
    )
    currencies = _currencies(conn, tables)
    out = []
    for dataset in STAGED:
        notes: dict[str, str] = {}
        keys = cfg.control_keys.get(dataset)
        rows = amount = None
        if control is None:
            notes["control"] = "the source ships no control file"
        elif keys is not None:
            if keys.rows and (v := _dig(control, keys.rows)) is not None:
                # The control file counts every exported row; rows the ingest refused to stage or the mapping's
                # keep_if filtered are accounted for.
                rows = _int(v, f"{keys.rows}") - int(ingest_q.get(dataset, 0)) - filtered.get(dataset, 0)
            if keys.amount and (v := _dig(control, keys.amount)) is not None:
                if filtered.get(dataset):
                    # Filtered rows are not kept, nor their amounts: the exported total cannot be compared.
                    notes["control_amount_total"] = (
                        f"{filtered[dataset]} {dataset} row(s) were filtered by the mapping: total not comparable"
                    )
                elif ingest_q.get(dataset):
                    # Rows quarantined while parsing have no trustworthy amount: the total cannot be compared.
                    notes["control_amount_total"] = (
                        f"{ingest_q[dataset]} {dataset} row(s) were quarantined at ingest: total not comparable"
                    )
                else:
                    amount = _amount(v, keys.amount)
        out.append(
            (
                Scope(
                    dataset=dataset,
                    as_of=as_of,
                    tables=tables,
                    batch_id=batch_id,
                    currencies=currencies,
                    control_rows=rows,
                    control_amount=amount,
                    tolerance=cfg.tie_out.tolerance,
                    dialect=conn.dialect.name,
                ),
                notes,
            )
        )
    return str(row.source), out


def _plan(scope: Scope, cfg: ValidationConfig, notes: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    from writeoffs.validation.gx import Planned

    planned, skipped = [], {}
    for check in checks_for(scope.dataset):
        rule = check.build(scope)
        if rule is None:
            skipped[check.name] = notes.get(check.rule_name) or notes.get("control") or "not reported by the source"
            continue
        planned.append(Planned(check, cfg.severity_of(check.name, check.default), rule))
    return planned, skipped


def _findings(outcomes: Sequence[Any]) -> list[Finding]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for o in outcomes:
        grouped[o.check].append(o)
    out = []
    for name, exps in grouped.items():
        failed = [e for e in exps if not e.success]
        counts = [e.unexpected_count for e in exps if e.unexpected_count is not None]
        out.append(
            Finding(
                check=name,
                severity=exps[0].severity,
                success=not failed,
                evaluated=len(exps),
                failed=len(failed),
                unexpected_count=sum(counts) if counts else None,
                observed="; ".join(e.observed for e in exps if e.observed is not None) or None,
                error="; ".join(e.error for e in failed if e.error) or None,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# quarantine


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


# --------------------------------------------------------------------------------------------------------------
# recording


def _record(conn: Connection, report: ValidationReport) -> None:
    for t in report.targets:
        params = {"rk": t.run_key, "suite": t.suite}
        conn.execute(text("DELETE FROM validation_runs WHERE run_key = :rk AND suite = :suite"), params)
        conn.execute(
            text(
                "INSERT INTO validation_runs (run_key, as_of_date, source, suite, evaluated, failed, blocking_failed,"
                " rows_quarantined, report_path, details) VALUES (:rk, :d, :src, :suite, :ev, :fa, :bf, :rq, :rp, :det)"
            ),
            {
                **params,
                "d": report.as_of,
                "src": t.source,
                "ev": t.evaluated,
                "fa": t.failed,
                "bf": t.blocking_failed,
                "rq": t.rows_quarantined,
                "rp": t.report_path,
                "det": canonical_json(
                    {
                        "batch_id": t.batch_id,
                        "checks": [f.as_dict() for f in t.findings],
                        "skipped": t.skipped,
                        "docs_index": report.docs_index,
                    }
                ),
            },
        )


def _docs_dir(cfg: ValidationConfig, as_of: date, run_key: str) -> Path:
    from writeoffs.validation.gx import slug

    return cfg.reports_path() / as_of.isoformat() / slug(run_key)


def publish_docs(docs: Path, cfg: ValidationConfig, reports: StorePath | None) -> None:
    """Copy a Data Docs site Great Expectations built on this worker's disk to ``<reports>/validation/<as-of>/<run>``
    (same layout), so the workspace on another machine can serve it. ``reports`` None: the reports store when
    ``WRITEOFFS_REPORTS_STORE`` is set (:mod:`writeoffs.report_store`), else nothing (the site is read where it
    was built, as before). GX writes only to a local folder, hence build here, then publish."""
    from writeoffs import report_store

    if reports is None:
        if not report_store.configured():
            return
        reports = report_store.reports_root()
    dest = reports / "validation"
    for part in docs.relative_to(cfg.reports_path()).parts:
        dest = dest / part
    count = report_store.publish_tree(docs, dest)
    log.info("Data Docs: %d file(s) published to %s", count, report_store.location(dest))


# --------------------------------------------------------------------------------------------------------------
# entry points


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
        started = time.perf_counter()
        bad = BadRows(conn)
        for t in targets:
            problem = bad.collect(t.no, t.scope, t.row_checks)
            if problem is None:
                t.counts = bad.counts(t.no, t.scope, t.row_checks)
            else:
                log.warning("%s: row-level checks cannot run in SQL (%s); GX evaluates the target", t.suite, problem)
        log.info(
            "row-level checks of %d target(s) counted in SQL in %.2f s", len(targets), time.perf_counter() - started
        )

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
        report = ValidationReport(run_key, as_of, results, str(index) if index else None)
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


@dataclass(slots=True)
class _Target:
    no: int  # the target's number in the run (the temporary table's ``target``)
    scope: Scope
    source: str
    suite: str
    planned: list[Any]
    skipped: dict[str, str]
    counts: RowCounts | None = None
    read: int = 0  # records the source delivered for this dataset (staged + quarantined, as staging counted)
    quarantined_before: int = 0  # of those, rows already in ingest_quarantine (parse errors, earlier runs)

    @property
    def row_checks(self) -> list[tuple[Check, Any]]:
        return [(p.check, p.rule) for p in self.planned if p.rule.scope == "row"]


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


def _aging_buckets(conn: Connection, as_of: date) -> tuple[tuple[Bucket, ...], str]:
    spec = conn.execute(text("SELECT bucket_spec FROM aging_runs WHERE as_of_date = :d"), {"d": as_of}).scalar()
    if spec is None:
        return DEFAULT_BUCKETS, "no aging_runs row: default buckets"
    try:
        data = json.loads(spec)
    except ValueError:
        data = None
    bounds = data.get("bounds") or data.get("bucket_bounds") if isinstance(data, dict) else data
    if isinstance(bounds, list) and bounds and all(isinstance(b, int) for b in bounds):
        return make_buckets(bounds), "aging_runs.bucket_spec"
    if isinstance(bounds, list) and bounds and all(isinstance(b, dict) for b in bounds):
        return tuple(Bucket(b["label"], int(b["low"]), b.get("high")) for b in bounds), "aging_runs.bucket_spec"
    raise ConfigError(f"aging_runs.bucket_spec for {as_of} is not understood: {spec[:200]!r}")


def tie_out_breaks(
    conn: Connection, as_of: date, tolerance: Decimal, tables: Tables = Tables()
) -> list[dict[str, Any]]:
    """The tie-out breaks themselves (the GX expectation only counts them): for the log and the alert."""
    scope = Scope("aging", as_of, tables)
    q = TieOut(as_of, to_db(conn, tolerance), tables).breaks_query(f"({scope.batch_query()}) AS s")
    rows = conn.execute(text(q + " ORDER BY x.entity_code, x.currency")).all()
    q4 = Decimal("0.0001")
    out = []
    for r in rows:
        aging, gl = from_db_or_zero(conn, r.aging_total), from_db_or_zero(conn, r.gl_balance)
        out.append(
            {
                "entity": r.entity_code,
                "currency": r.currency,
                "aging_total": str(aging.quantize(q4)),
                "gl_balance": str(gl.quantize(q4)),
                "difference": str((aging - gl).quantize(q4)),
            }
        )
    return out


def validate_aging(
    engine: Engine,
    *,
    as_of: date,
    run_key: str,
    config: ValidationConfig | None = None,
    tables: Tables = Tables(),
    reports: StorePath | None = None,
) -> ValidationReport:
    """Check the aging snapshot of ``as_of`` (bucket consistency, GL tie-out) before candidate selection."""
    from writeoffs.validation.gx import run_suites

    cfg = config or load_config()
    with engine.connect() as conn:
        buckets, origin = _aging_buckets(conn, as_of)
    scope = Scope("aging", as_of, tables, buckets=buckets, tolerance=cfg.tie_out.tolerance, dialect=engine.dialect.name)
    planned, skipped = _plan(scope, cfg, {})
    docs = _docs_dir(cfg, as_of, run_key)
    outcomes, index = run_suites(engine, [(scope, "aging", planned, None)], run_name=run_key, docs_dir=docs)
    publish_docs(docs, cfg, reports)
    target = TargetResult(
        suite="aging",
        run_key=run_key,
        source=None,
        batch_id=None,
        findings=_findings(outcomes[0].expectations),
        skipped={**skipped, "buckets": origin},
        report_path=outcomes[0].report_page,
    )
    report = ValidationReport(run_key, as_of, [target], str(index))
    with engine.begin() as conn:
        if any(f.check == "aging.tie_out_gl" and not f.success for f in target.findings):
            target.skipped["tie_out_breaks"] = canonical_json(
                tie_out_breaks(conn, as_of, cfg.tie_out.tolerance, tables)
            )
        _record(conn, report)
    _log(report)
    if report.blocking:
        raise ValidationBlocked(report)
    return report


def _log(report: ValidationReport) -> None:
    s = report.summary()
    log.info(
        "validation %s (%s): %d expectations, %d failed (%d blocking), %d rows quarantined; report: %s",
        report.run_key,
        report.as_of,
        s["evaluated"],
        s["failed"],
        s["blocking_failed"],
        s["rows_quarantined"],
        f"file://{report.docs_index}" if report.docs_index else "-",
    )
    for t in report.targets:
        for f in t.findings:
            if not f.success:
                log.warning(
                    "  %s %s [%s]: %s%s",
                    t.source or "ledger",
                    f.check,
                    f.severity,
                    f.error or f.observed or f"{f.unexpected_count} offending rows",
                    f" -> {f.quarantined} quarantined" if f.quarantined else "",
                )
        if t.report_path:
            log.info("  %s/%s report: %s", t.source or "ledger", t.suite, t.report_path)
