"""Running a reconciliation: the check registry (:data:`CHECKS`), :func:`run_checks` on one snapshot,
:func:`store_run` (run + breaks, audited) and :func:`reconcile`, which does all of it and writes the report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, insert, select, update

from writeoffs import audit
from writeoffs.db import dialect, stats
from writeoffs.db.engine import consistent_reads
from writeoffs.db.schema import recon_breaks, recon_runs
from writeoffs.period_seal import check_period_seals
from writeoffs.recon_lines import check_approval_digests, check_writeoff_lines
from writeoffs.reconcile.checks_audit import check_audit_chain
from writeoffs.reconcile.checks_checkpoints import check_checkpoints
from writeoffs.reconcile.checks_gl import (
    check_ar_functional,
    check_entries_balanced,
    check_movements,
    check_subledger_vs_gl,
)
from writeoffs.reconcile.checks_recoveries import (
    check_allowance,
    check_allowance_sign,
    check_recoveries,
    check_recovery_cash,
)
from writeoffs.reconcile.checks_writeoffs import (
    check_approved_vs_posted,
    check_paid_after_selection,
    check_posting_rules,
    check_writeoff_entries,
)
from writeoffs.reconcile.model import Break, Check, CheckOutcome, ReconResult, Tolerances
from writeoffs.reconcile.report import render_report, report_path_for
from writeoffs.report_store import StorePath, location

# The logger keeps the name it had before the module became a package: log filters and handlers still match it.
log = logging.getLogger("writeoffs.reconcile")


#: The registry: every run executes all of these, in this order. Add a check by appending here.
CHECKS: tuple[Check, ...] = (
    Check("subledger_vs_gl", "Sub-ledger open AR = GL AR control, per entity and currency", check_subledger_vs_gl),
    Check("approved_vs_posted", "Approved = posted + skipped with a reason, per batch", check_approved_vs_posted),
    Check("entries_balanced", "Every journal entry balances (transaction and functional)", check_entries_balanced),
    Check("writeoff_entries", "Exactly one active write-off entry per written-off invoice", check_writeoff_entries),
    Check("recoveries", "Recoveries within amounts written off, recovered_amount consistent", check_recoveries),
    Check("allowance", "Allowance account explained by its entries; write-offs charged match", check_allowance),
    Check(
        "paid_after_selection",
        "No posted write-off of an invoice paid after selection, or paid and written off beyond its amount",
        check_paid_after_selection,
    ),
    Check(
        "posting_rules",
        "No posted write-off under an active hold, or of a child invoice the parent paid in part",
        check_posting_rules,
    ),
    Check("recovery_cash", "Cash received on written-off amounts = cash booked, per invoice", check_recovery_cash),
    Check(
        "allowance_sign",
        "Allowance never in debit; equal to the latest estimate right after its true-up",
        check_allowance_sign,
    ),
    Check("ar_functional", "No functional residue on AR where the transaction balance is zero", check_ar_functional),
    Check(
        "writeoff_lines",
        "Each posted write-off's entry = its approved item: reason's account, amount, two lines",
        check_writeoff_lines,
    ),
    Check(
        "approval_digests",
        "Each posted batch's items still hash to the digest its audited approval recorded",
        check_approval_digests,
    ),
    Check(
        "period_seals",
        "Every closed period's posted lines still add up to the seal recorded at close",
        check_period_seals,
    ),
    Check("audit_chain", "Audit chain intact under its key and up to the checkpoint kept outside", check_audit_chain),
    Check("movements", "Every invoice's movements add up to its open balance (history not bypassed)", check_movements),
    Check("checkpoints", "Every sub-ledger checkpoint equals its movements, up to its marks", check_checkpoints),
)


def run_checks(
    conn: Connection, as_of: date, tolerance: Tolerances, checks: Iterable[Check] = CHECKS
) -> list[CheckOutcome]:
    """Run every check on ``conn``; a check that fails to run is a break of its own, never a reason to stop."""
    outcomes = []
    for chk in checks:
        t0 = time.perf_counter()
        # PostgreSQL aborts the whole transaction on an error: a savepoint keeps the other checks running where the
        # read snapshot takes savepoints (db.dialect: errors_abort_transaction; SQLite's takes none, as before).
        savepoint = conn.begin_nested() if dialect.of(conn).errors_abort_transaction else None
        try:
            breaks = tuple(chk.fn(conn, as_of, tolerance))
            if savepoint is not None:
                savepoint.commit()
            error = None
        except Exception as exc:  # any failure of one check is recorded; the others still run
            if savepoint is not None:
                savepoint.rollback()
            log.exception("reconciliation check %s failed to run", chk.name)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            breaks = (Break(check=chk.name, message=f"check could not run: {error}"),)
        outcomes.append(CheckOutcome(chk, breaks, time.perf_counter() - t0, error))
    return outcomes


def store_run(
    conn: Connection, *, run_key: str, as_of: date, outcomes: Sequence[CheckOutcome], report_path: StorePath | None
) -> int:
    """Write (or, for a retried run key, replace) the run and its breaks. Idempotent per ``run_key``."""
    n_breaks = sum(len(o.breaks) for o in outcomes)
    existing = conn.execute(select(recon_runs.c.id).where(recon_runs.c.run_key == run_key)).scalar()
    values = {
        "as_of_date": as_of,
        "checks_run": len(outcomes),
        "break_count": n_breaks,
        "report_path": location(report_path) if report_path else None,
    }
    if existing is None:
        run_id = conn.execute(
            insert(recon_runs).values(run_key=run_key, **values).returning(recon_runs.c.id)
        ).scalar_one()
    else:
        run_id = existing
        conn.execute(delete(recon_breaks).where(recon_breaks.c.run_id == run_id))
        conn.execute(update(recon_runs).where(recon_runs.c.id == run_id).values(**values))
    rows = [
        {
            "run_id": run_id,
            "check_name": b.check,
            "entity_code": b.entity,
            "currency": b.currency,
            "account_code": b.account,
            "expected": b.expected,
            "actual": b.actual,
            "difference": b.difference,
            "documents": json.dumps([dict(d) for d in b.documents], sort_keys=True, default=str),
            "message": b.message,
        }
        for o in outcomes
        for b in o.breaks
    ]
    if rows:
        conn.execute(insert(recon_breaks), rows)
    audit.append(
        conn,
        actor="reconciliation",
        action="recon.run",
        object_type="recon_run",
        object_id=run_id,
        details={
            "run_key": run_key,
            "as_of": as_of,
            "checks_run": len(outcomes),
            "break_count": n_breaks,
            "breaks_by_check": {o.check.name: len(o.breaks) for o in outcomes},
        },
    )
    return int(run_id)


def reconcile(
    engine: Engine,
    as_of: date,
    *,
    run_key: str,
    tolerance: Tolerances | None = None,
    checks: Sequence[Check] = CHECKS,
    report_dir: Path | None = None,
    reports: StorePath | None = None,
    write_report: bool = True,
) -> ReconResult:
    """Run all checks on one snapshot, store run + breaks, write the report. Re-running a run key replaces it."""
    tolerance = tolerance or Tolerances()
    started = time.perf_counter()
    with engine.begin() as conn:
        # The checks join the tables the last ingest and posting just bulk-wrote: planned on stale statistics
        # (autovacuum has not caught up yet) one of them took minutes instead of seconds (writeoffs.db.stats).
        analyzed = stats.analyze_stale(conn)
    if analyzed:
        log.info("statistics refreshed before the checks: %s", ", ".join(analyzed))
    with engine.connect() as raw:
        conn = consistent_reads(raw)  # one snapshot for all checks
        with conn.begin():
            outcomes = run_checks(conn, as_of, tolerance, checks)
    path = report_path_for(as_of, run_key, report_dir, reports=reports) if write_report else None
    with engine.begin() as conn:
        run_id = store_run(conn, run_key=run_key, as_of=as_of, outcomes=outcomes, report_path=path)
    result = ReconResult(run_id, run_key, as_of, tuple(outcomes), tolerance, path, time.perf_counter() - started)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file then rename: a reader (or a retried task) never sees half a report.
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(render_report(result), encoding="utf-8")
        tmp.replace(path)
    log.info("%s", result.headline())
    return result
