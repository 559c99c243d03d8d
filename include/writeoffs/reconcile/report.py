"""Reconciliation's per-run Markdown report: where it is filed (:func:`report_path_for`) and what it says
(:func:`render_report`: a summary table per check, then every break with its documents)."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

from writeoffs.money import money_str
from writeoffs.reconcile.model import ReconResult
from writeoffs.report_store import StorePath
from writeoffs.safe_text import md


def report_path_for(
    as_of: date, run_key: str, base_dir: Path | None = None, *, reports: StorePath | None = None
) -> StorePath:
    """``<reports>/reconciliation/<as_of>-<run>.md`` (run key made file-name safe). ``reports`` is the reports
    store's root (:mod:`writeoffs.report_store`; default ``WRITEOFFS_REPORTS_STORE``, else
    ``$WRITEOFFS_DATA_DIR/reports``); ``base_dir`` a data folder whose ``reports`` folder is used instead."""
    from writeoffs.report_store import reports_under

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_key).strip("_")[:150] or "run"
    return reports_under(base_dir, reports) / "reconciliation" / f"{as_of.isoformat()}-{safe}.md"


def _cell(value: object) -> str:
    return md(value)  # customer data renders literally (writeoffs.safe_text)


def render_report(result_like: ReconResult) -> str:
    """The per-run Markdown report: summary table per check, then every break with its documents."""
    r = result_like
    lines = [
        f"# Reconciliation {r.as_of.isoformat()}",
        "",
        f"- Run: `{r.run_key}` (recon run id {r.run_id})",
        f"- Result: **{'CLEAN' if not r.break_count else f'{r.break_count} BREAK(S)'}**",
        f"- Tolerances: {', '.join(f'{k} {v}' for k, v in r.tolerance.as_dict().items())}",
        f"- Duration: {r.seconds:.2f} s",
        "",
        "| Check | What it proves | Breaks | Seconds |",
        "|---|---|---:|---:|",
    ]
    for o in r.outcomes:
        lines.append(f"| `{o.check.name}` | {_cell(o.check.title)} | {len(o.breaks)} | {o.seconds:.3f} |")
    if r.break_count:
        lines += ["", "## Breaks", "", "Difference = actual - expected.", ""]
        n = 0
        for o in r.outcomes:
            for b in o.breaks:
                n += 1
                lines += [
                    f"### {n}. `{b.check}` {b.entity or ''} {b.currency or ''}".rstrip(),
                    "",
                    b.message,
                    "",
                    "| Entity | Currency | Account | Expected | Actual | Difference |",
                    "|---|---|---|---:|---:|---:|",
                    "| "
                    + " | ".join(
                        _cell(v)
                        for v in (
                            b.entity,
                            b.currency,
                            b.account,
                            money_str(b.expected) if b.expected is not None else "",
                            money_str(b.actual) if b.actual is not None else "",
                            money_str(b.difference) if b.difference is not None else "",
                        )
                    )
                    + " |",
                    "",
                ]
                if b.documents:
                    lines.append("Affected documents:")
                    lines.append("")
                    for d in b.documents:
                        lines.append(f"- `{json.dumps(dict(d), sort_keys=True, default=str)}`")
                    lines.append("")
    return "\n".join(lines) + "\n"
