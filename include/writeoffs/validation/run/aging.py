"""Entry point for the aging snapshot: :func:`validate_aging`, with its buckets and the GL tie-out breaks."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

from writeoffs.audit import canonical_json
from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, make_buckets
from writeoffs.db import dialect
from writeoffs.db.money import from_db_or_zero, to_db
from writeoffs.errors import ConfigError
from writeoffs.report_store import StorePath
from writeoffs.validation.checks import Scope, Tables, TieOut
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.config import load as load_config
from writeoffs.validation.run.plan import _findings, _plan
from writeoffs.validation.run.record import _docs_dir, _record, publish_docs
from writeoffs.validation.run.report import TargetResult, ValidationBlocked, ValidationReport, _log


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
    scope = Scope("aging", as_of, tables, buckets=buckets, tolerance=cfg.tie_out.tolerance, dialect=dialect.of(engine))
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
