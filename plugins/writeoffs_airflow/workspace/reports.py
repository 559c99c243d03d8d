"""The report files the DAGs write, served behind Airflow's login: KPI reports and charts, reconciliation reports.

Only two folders of ``$WRITEOFFS_DATA_DIR/reports`` are served (``kpi``, ``reconciliation``), only plain file names
(no path separators, no dot files) with a known suffix, and only files that resolve inside their folder. Candidate
lists (``reports/batches``) are not: a batch's CSV goes through the batch's own access check
(``/writeoffs/batches/<id>/candidates.csv``). Markdown and JSON are sent as plain text (shown, never rendered), CSV
as a download, SVG as an image under a CSP that allows no script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

FOLDERS = ("kpi", "reconciliation")
#: suffix -> (media type, served as a download)
TYPES = {
    ".md": ("text/plain; charset=utf-8", False),
    ".json": ("text/plain; charset=utf-8", False),
    ".csv": ("text/csv; charset=utf-8", True),
    ".svg": ("image/svg+xml", False),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
LIST_MAX = 500


@dataclass(frozen=True, slots=True)
class ReportFile:
    folder: str
    name: str
    size: int
    modified: datetime


def reports_root() -> Path:
    from writeoffs.db.engine import data_dir

    return data_dir() / "reports"


def listing(root: Path | None = None) -> list[ReportFile]:
    """The servable files, newest first (at most :data:`LIST_MAX`)."""
    root = root or reports_root()
    out = []
    for folder in FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in base.iterdir():
            if path.is_file() and not path.is_symlink() and servable(folder, path.name):
                st = path.stat()
                out.append(ReportFile(folder, path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
    out.sort(key=lambda f: (f.modified, f.name), reverse=True)
    return out[:LIST_MAX]


def servable(folder: str, name: str) -> bool:
    return folder in FOLDERS and bool(_NAME.fullmatch(name)) and Path(name).suffix in TYPES


def resolve(folder: str, name: str, root: Path | None = None) -> Path | None:
    """The file to send, or None (unknown folder, odd name, other suffix, missing, a link, or outside the folder)."""
    if not servable(folder, name):
        return None
    base = (root or reports_root()) / folder
    path = base / name
    if not path.is_file() or path.is_symlink():
        return None
    if not path.resolve().is_relative_to(base.resolve()):
        return None
    return path
