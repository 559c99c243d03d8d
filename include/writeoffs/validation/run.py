"""Validate staged ingest batches and the aging snapshot: evaluate, gate, quarantine, record.

Order of work, and why:
1. GX evaluates every applicable check of every target in the database (counts + Data Docs).
2. Any failed ``blocking`` check: the run is recorded in ``validation_runs`` and :class:`ValidationBlocked` is
   raised; nothing is quarantined (the batch is rejected as a whole, its rows stay staged for inspection).
3. Otherwise the rows offending ``warning`` checks are moved, set-wise, from staging to ``ingest_quarantine`` with
   the check's rule name as ``reason`` (INSERT ... SELECT with the very predicate the GX expectation was built
   from), and the batch's accepted/quarantined counts are adjusted so the merge's staged-row check still holds.
   If that would remove more than ``max_quarantined_fraction`` of a batch's rows, the run blocks instead.
Steps 2–3 run in one transaction with the ``validation_runs`` rows, so a retried task never half-quarantines.
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
from writeoffs.errors import ConfigError, WriteoffError
from writeoffs.validation.checks import STAGED, Check, Scope, Tables, TieOut, checks_for
from writeoffs.validation.config import Severity, ValidationConfig
from writeoffs.validation.config import load as load_config
from writeoffs.validation.rules import ROW

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
            what = f.error or (f"{f.unexpected_count} offending" if f.unexpected_count is not None else f.observed)
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
        text("SELECT source, as_of_date, control FROM ingest_batches WHERE id = :b"), {"b": batch_id}
    ).first()
    if row is None:
        raise WriteoffError(f"ingest batch {batch_id} does not exist")
    control = json.loads(row.control, parse_float=Decimal) if row.control else None
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
                # The control file counts every exported row; rows the ingest refused to stage are accounted for.
                rows = _int(v, f"{keys.rows}") - int(ingest_q.get(dataset, 0))
            if keys.amount and (v := _dig(control, keys.amount)) is not None:
                if ingest_q.get(dataset):
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


def _raw_json(conn: Connection, table: str) -> str:
    if conn.dialect.name == "postgresql":
        return f"CAST(row_to_json({ROW}) AS TEXT)"
    cols = [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})"))]
    return "json_object(" + ", ".join(f"'{c}', {ROW}.{c}" for c in cols) + ")"


def _quarantine(conn: Connection, scope: Scope, warnings: list[tuple[Check, Any]]) -> dict[str, int]:
    """Move the rows offending ``warnings`` from staging to ``ingest_quarantine``; returns rows per reason.

    Set-wise: one INSERT ... SELECT per failed check. The rows leave staging later (:func:`_remove_quarantined`),
    once every target has been quarantined: the predicates were evaluated by GX on the batch as staged, and
    ``customer_known`` looks at the batch's invoices, so deleting invoices first would change what payments see.
    """
    table, b = scope.table, {"b": scope.batch_id}
    where = scope.filter_sql(ROW)
    raw = _raw_json(conn, table)
    per_reason: dict[str, int] = {}
    for check, rule in warnings:
        n = conn.execute(
            text(
                "INSERT INTO ingest_quarantine"
                " (batch_id, dataset, source_file, source_row, field, reason, message, raw)"
                f" SELECT {ROW}.batch_id, :ds, {ROW}.source_file, {ROW}.source_row, :fld, :reason, :msg, {raw}"
                f" FROM {table} {ROW} WHERE {where} AND ({rule.predicate(ROW)})"
            ),
            {
                **b,
                "ds": scope.dataset,
                "fld": check.column,
                "reason": check.rule_name,
                "msg": f"validation warning {check.name}: {check.description}",
            },
        ).rowcount
        per_reason[check.rule_name] = n or 0
    return per_reason


def _remove_quarantined(conn: Connection, scope: Scope, warnings: list[tuple[Check, Any]]) -> None:
    """Delete the batch's staged rows that :func:`_quarantine` recorded (one set-wise DELETE)."""
    table = scope.table
    reasons = ", ".join(f"'{c.rule_name}'" for c, _ in warnings)
    conn.execute(
        text(
            f"DELETE FROM {table} WHERE batch_id = :b AND EXISTS (SELECT 1 FROM ingest_quarantine q"
            f" WHERE q.batch_id = {table}.batch_id AND q.dataset = :ds AND q.reason IN ({reasons})"
            f" AND q.source_file = {table}.source_file AND q.source_row = {table}.source_row)"
        ),
        {"b": scope.batch_id, "ds": scope.dataset},
    )


def _offending_rows(conn: Connection, scope: Scope, warnings: list[tuple[Check, Any]]) -> tuple[int, int]:
    """(distinct offending rows, rows in the batch): a row failing two checks counts once.

    A UNION of one SELECT per check, not ``CASE WHEN p1 OR p2``: an EXISTS inside an expression is a per-row
    sub-plan, while at the top of a WHERE clause the planner turns it into a hash (anti-)join.
    """
    where = scope.filter_sql(ROW)
    union = " UNION ".join(
        f"SELECT {ROW}.source_file, {ROW}.source_row FROM {scope.table} {ROW} WHERE {where} AND ({r.predicate(ROW)})"
        for _, r in warnings
    )
    bad = conn.execute(text(f"SELECT COUNT(*) FROM ({union}) u")).scalar_one()
    total = conn.execute(text(f"SELECT COUNT(*) FROM {scope.table} {ROW} WHERE {where}")).scalar_one()
    return int(bad), int(total)


def _adjust_batch_counts(conn: Connection, batch_id: int, moved: dict[str, int]) -> None:
    """Keep ``ingest_batches`` consistent (accepted + quarantined == read) after rows left staging."""
    from writeoffs.ingest.tables import STAGING

    row = conn.execute(text("SELECT details FROM ingest_batches WHERE id = :b"), {"b": batch_id}).one()
    details = json.loads(row.details or "{}", parse_float=Decimal)
    total_moved = 0
    for dataset, n in moved.items():
        if not n:
            continue
        total_moved += n
        d = details.setdefault(dataset, {})
        staged = conn.execute(
            text(f"SELECT COUNT(*) FROM {STAGING[dataset].name} WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one()
        d["accepted"] = int(staged)
        d["quarantined"] = int(d.get("quarantined", 0)) + n
        totals = d.get("totals") or {}
        for col in list(totals):
            s = conn.execute(
                text(f"SELECT COALESCE(SUM({col}), 0) FROM {STAGING[dataset].name} WHERE batch_id = :b"),
                {"b": batch_id},
            ).scalar_one()
            totals[col] = Decimal(str(s)).quantize(Decimal("0.0001"))
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
) -> ValidationReport:
    """Validate the staged datasets of ``batch_ids``; quarantine warnings; raise :class:`ValidationBlocked`."""
    from writeoffs.validation.gx import run_suites

    cfg = config or load_config()
    targets: list[tuple[Scope, str, list[Any]]] = []
    meta: list[tuple[Scope, str, dict[str, str], list[Any]]] = []
    with engine.connect() as conn:
        for batch_id in sorted(set(batch_ids)):
            source, scopes = _batch_scopes(conn, batch_id, as_of, cfg, tables)
            for scope, notes in scopes:
                planned, skipped = _plan(scope, cfg, notes)
                suite = f"{scope.dataset}__{source}__b{batch_id}"
                targets.append((scope, suite, planned))
                meta.append((scope, source, skipped, planned))
    docs = _docs_dir(cfg, as_of, run_key)
    started = time.perf_counter()
    outcomes, index = run_suites(engine, targets, run_name=run_key, docs_dir=docs) if targets else ([], None)
    log.info("GX evaluated %d target(s) in %.2f s", len(targets), time.perf_counter() - started)
    results = []
    for (scope, source, skipped, _planned), outcome in zip(meta, outcomes, strict=True):
        results.append(
            TargetResult(
                suite=scope.dataset,
                run_key=f"{run_key}:{source}",
                source=source,
                batch_id=scope.batch_id,
                findings=_findings(outcome.expectations),
                skipped=skipped,
                report_path=outcome.report_page,
            )
        )
    report = ValidationReport(run_key, as_of, results, str(index) if index else None)
    started = time.perf_counter()
    with engine.begin() as conn:
        if not report.blocking:
            _quarantine_warnings(conn, report, meta, cfg)
        _record(conn, report)
    log.info("quarantine and bookkeeping in %.2f s", time.perf_counter() - started)
    _log(report)
    if report.blocking:
        raise ValidationBlocked(report)
    return report


def _quarantine_warnings(
    conn: Connection,
    report: ValidationReport,
    meta: list[tuple[Scope, str, dict[str, str], list[Any]]],
    cfg: ValidationConfig,
) -> None:
    # Pass 1 measures every target before anything moves: if one batch trips the share guard the whole run is
    # rejected and no batch is half-quarantined.
    work = []
    for target, (scope, _, _, planned) in zip(report.targets, meta, strict=True):
        failed = {f.check for f in target.findings if not f.success and f.severity == "warning"}
        warnings = [(p.check, p.rule) for p in planned if p.check.name in failed and p.rule.scope == "row"]
        if not warnings:
            continue
        bad, total = _offending_rows(conn, scope, warnings)
        if total and Decimal(bad) / Decimal(total) > cfg.max_quarantined_fraction:
            target.findings.append(
                Finding(
                    check=f"{scope.dataset}.quarantine_share",
                    severity="blocking",
                    success=False,
                    evaluated=1,
                    failed=1,
                    unexpected_count=bad,
                    observed=f"{bad} of {total} rows offend warning checks (limit {cfg.max_quarantined_fraction})",
                )
            )
        work.append((target, scope, warnings, bad))
    if report.blocking:
        return
    moved_by_batch: dict[int, dict[str, int]] = defaultdict(dict)
    for target, scope, warnings, bad in work:
        per_reason = _quarantine(conn, scope, warnings)
        target.findings = [
            Finding(**{**f.as_dict(), "quarantined": per_reason.get(f.check.split(".", 1)[1], 0)})
            for f in target.findings
        ]
        target.rows_quarantined = bad
        assert scope.batch_id is not None
        moved_by_batch[scope.batch_id][scope.dataset] = bad
    for _, scope, warnings, _ in work:
        _remove_quarantined(conn, scope, warnings)
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
    q = TieOut(as_of, tolerance, tables).breaks_query(f"({scope.batch_query()}) AS s")
    rows = conn.execute(text(q + " ORDER BY x.entity_code, x.currency")).all()
    return [
        {
            "entity": r.entity_code,
            "currency": r.currency,
            "aging_total": str(Decimal(str(r.aging_total)).quantize(Decimal("0.0001"))),
            "gl_balance": str(Decimal(str(r.gl_balance)).quantize(Decimal("0.0001"))),
            "difference": str((Decimal(str(r.aging_total)) - Decimal(str(r.gl_balance))).quantize(Decimal("0.0001"))),
        }
        for r in rows
    ]


def validate_aging(
    engine: Engine,
    *,
    as_of: date,
    run_key: str,
    config: ValidationConfig | None = None,
    tables: Tables = Tables(),
) -> ValidationReport:
    """Check the aging snapshot of ``as_of`` (bucket consistency, GL tie-out) before candidate selection."""
    from writeoffs.validation.gx import run_suites

    cfg = config or load_config()
    with engine.connect() as conn:
        buckets, origin = _aging_buckets(conn, as_of)
    scope = Scope("aging", as_of, tables, buckets=buckets, tolerance=cfg.tie_out.tolerance)
    planned, skipped = _plan(scope, cfg, {})
    outcomes, index = run_suites(
        engine, [(scope, "aging", planned)], run_name=run_key, docs_dir=_docs_dir(cfg, as_of, run_key)
    )
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
