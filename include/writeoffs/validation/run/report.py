"""What a validation run reports: findings per check, per target and per run, the exception a blocking
failure raises, and the run's log lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from writeoffs.errors import WriteoffError
from writeoffs.validation.config import Severity

log = logging.getLogger("writeoffs.validation.run")  # one logger for the package, named as before its split


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
