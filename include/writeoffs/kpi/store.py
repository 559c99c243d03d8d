"""Report files in the reports store: :func:`write_report` (Markdown, JSON, tax listing), :func:`run_kpis` (compute on
one snapshot, then write; the DAG and CLI entry point) and :func:`reported_months` (which months are already there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from writeoffs.db.engine import consistent_reads
from writeoffs.kpi.compute import kpi_report
from writeoffs.kpi.model import KpiReport
from writeoffs.kpi.render import render_listing_csv, render_markdown
from writeoffs.report_store import StorePath


@dataclass(frozen=True, slots=True)
class ReportFiles:
    markdown: StorePath
    json: StorePath
    listing: StorePath

    def summary(self) -> dict[str, str]:
        from writeoffs.report_store import location

        return {"markdown": location(self.markdown), "json": location(self.json), "listing": location(self.listing)}


def _write(path: StorePath, content: str) -> None:
    # Temp file then rename: a reader (or a retried task) never sees half a report.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.replace(path)


def write_report(report: KpiReport, base_dir: Path | None = None, *, reports: StorePath | None = None) -> ReportFiles:
    """``<reports>/kpi/<period>.md``, ``.json`` and ``<period>-tax-listing.csv`` (replaced). ``reports`` is the
    reports store's root (:mod:`writeoffs.report_store`; default ``WRITEOFFS_REPORTS_STORE``, else
    ``$WRITEOFFS_DATA_DIR/reports``); ``base_dir`` a data folder whose ``reports`` folder is used instead."""
    from writeoffs.report_store import reports_under

    folder = reports_under(base_dir, reports) / "kpi"
    folder.mkdir(parents=True, exist_ok=True)
    label = report.period.label
    files = ReportFiles(folder / f"{label}.md", folder / f"{label}.json", folder / f"{label}-tax-listing.csv")
    _write(files.listing, render_listing_csv(report))
    _write(files.json, json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    _write(files.markdown, render_markdown(report, files.listing.name))
    return files


@contextmanager
def read_snapshot(engine: Any) -> Iterator[Connection]:
    """A connection of ``engine`` in one transaction that reads one consistent snapshot: read-only repeatable read on
    PostgreSQL, the connection as it is elsewhere. For a report and everything drawn or written from it."""
    with engine.connect() as raw:
        conn = consistent_reads(raw)
        with conn.begin():
            yield conn


def run_kpis(
    engine: Any,
    start: date,
    end: date,
    *,
    previous: bool = True,
    base_dir: Path | None = None,
    reports: StorePath | None = None,
) -> tuple[KpiReport, ReportFiles]:
    """Compute on one consistent snapshot and write the files (the DAG and CLI entry point)."""
    with read_snapshot(engine) as conn:
        report = kpi_report(conn, start, end, previous=previous)
    return report, write_report(report, base_dir, reports=reports)


def reported_months(base_dir: Path | None = None, *, reports: StorePath | None = None) -> set[str]:
    """Months (``YYYY-MM``) whose monthly report is in the reports store (its JSON is written last but one, the
    Markdown last); ``base_dir`` and ``reports`` as for :func:`write_report`."""
    from writeoffs.report_store import reports_under

    folder = reports_under(base_dir, reports) / "kpi"
    if not folder.is_dir():
        return set()
    out = set()
    for markdown in folder.glob("????-??.md"):
        label = markdown.stem
        if (folder / f"{label}.json").exists():
            out.add(label)
    return out
