"""The report files the DAGs write, served behind Airflow's login: KPI reports and charts, reconciliation reports,
and the validation runs' Data Docs (made offline by ``writeoffs.validation.docs``).

Only two folders of ``$WRITEOFFS_DATA_DIR/reports`` are served (``kpi``, ``reconciliation``), only plain file names
(no path separators, no dot files) with a known suffix, and only files that resolve inside their folder. Candidate
lists (``reports/batches``) are not: a batch's CSV goes through the batch's own access check
(``/writeoffs/batches/<id>/candidates.csv``). Markdown and JSON are sent as plain text (shown, never rendered), CSV
as a download, SVG and PNG as images under a CSP that allows no script.
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
    ".png": ("image/png", False),
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


# ------------------------------------------------------------------------------------- validation Data Docs

#: What a Data Docs site holds -> media type. Nothing else is served from it.
DOCS_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
    ".otf": "font/otf",
}
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")
DOCS_DEPTH = 8  # <as-of>/<run>/validations/<suite>/<run name>/<run time>/<batch>.html is 7


@dataclass(frozen=True, slots=True)
class DocsPage:
    site: str  # "<as-of>/<run>", relative to the validation reports folder
    suite: str
    run: str
    when: str
    path: str  # relative to the validation reports folder


def validation_root() -> Path:
    """Where the validation runs build their Data Docs (``writeoffs.validation.config``: ``reports_dir``)."""
    from writeoffs.validation.config import load

    return load().reports_path()


def validation_listing(root: Path | None = None) -> tuple[list[str], list[DocsPage]]:
    """The sites (``<as-of>/<run>``, newest business date first) and every validation result page in them, newest
    first (at most :data:`LIST_MAX` pages)."""
    from writeoffs.validation.docs import validation_pages

    root = root or validation_root()
    sites: list[str] = []
    pages: list[DocsPage] = []
    if not root.is_dir():
        return sites, pages
    for day in sorted((d for d in root.iterdir() if d.is_dir() and not d.is_symlink()), reverse=True):
        for site in sorted(s for s in day.iterdir() if s.is_dir() and not s.is_symlink()):
            rel = f"{day.name}/{site.name}"
            if not (site / "index.html").is_file() or resolve_docs(rel + "/index.html", root) is None:
                continue
            sites.append(rel)
            for suite, run, when, path in validation_pages(site):
                if resolve_docs(f"{rel}/{path}", root) is not None:
                    pages.append(DocsPage(rel, suite, run, when, f"{rel}/{path}"))
    pages.sort(key=lambda p: (p.when, p.site, p.suite), reverse=True)
    return sites, pages[:LIST_MAX]


def resolve_docs(relative: str, root: Path | None = None) -> Path | None:
    """A file of a Data Docs site to send, or None: every path segment a plain name (no dot files, no ``..``), a
    known suffix, no links, inside the validation reports folder."""
    parts = relative.split("/")
    if not 1 <= len(parts) <= DOCS_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        return None
    if Path(parts[-1]).suffix not in DOCS_TYPES:
        return None
    base = root or validation_root()
    path = base.joinpath(*parts)
    if not path.is_file() or any(p.is_symlink() for p in (path, *path.parents) if p != base and p.is_relative_to(base)):
        return None
    if not path.resolve().is_relative_to(base.resolve()):
        return None
    return path
