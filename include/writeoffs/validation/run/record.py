"""Recording: ``validation_runs`` rows and the Data Docs site published to the reports store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import Connection, text

from writeoffs.audit import canonical_json
from writeoffs.report_store import StorePath
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.run.report import ValidationReport, log


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
