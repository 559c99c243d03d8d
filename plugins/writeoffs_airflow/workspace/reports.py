"""The report files the DAGs write, served behind Airflow's login: KPI reports and charts, reconciliation reports,
and the validation runs' Data Docs (made offline by ``writeoffs.validation.docs``).

The files are read from the reports store (:mod:`writeoffs_airflow.storage`: ``WRITEOFFS_REPORTS_STORE``, default
``$WRITEOFFS_DATA_DIR/reports``) through Airflow's ``ObjectStoragePath``, so the api-server serves what any worker
wrote, on a shared disk or in an object store. Only two folders of it are served (``kpi``, ``reconciliation``),
only plain file names (no path separators, no dot files) with a known suffix, and, on a local disk, only regular
files (no links) that resolve inside their folder; an object store has no links and no ``..``, and the names are
checked before they reach it. Candidate
lists (``reports/batches``) are not: a batch's CSV goes through the batch's own access check
(``/writeoffs/batches/<id>/candidates.csv``). Markdown and JSON are sent as plain text (shown, never rendered), CSV
as a download, SVG and PNG as images under a CSP that allows no script.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from writeoffs.report_store import StorePath, is_local

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


def reports_root() -> StorePath:
    from writeoffs_airflow.storage import reports_root as store_root

    return store_root()


def listing(root: StorePath | None = None) -> list[ReportFile]:
    """The servable files, newest first (at most :data:`LIST_MAX`)."""
    root = reports_root() if root is None else root
    out = []
    for folder in FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for path in base.iterdir():
            if servable(folder, path.name) and _plain_file(path, base):
                st = path.stat()
                out.append(ReportFile(folder, path.name, st.st_size, _modified(st)))
    out.sort(key=lambda f: (f.modified, f.name), reverse=True)
    return out[:LIST_MAX]


def _modified(st: Any) -> datetime:
    # A local stat has st_mtime; object stores give their own key (S3 ``LastModified``, memory ``created``).
    when = getattr(st, "st_mtime", 0) or 0
    if not when and hasattr(st, "get"):
        when = st.get("LastModified") or st.get("mtime") or st.get("created") or 0
    if isinstance(when, datetime):
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(when), UTC)


def _plain_file(path: StorePath, base: StorePath) -> bool:
    """A regular file inside ``base``: on a local disk not a link and not resolving elsewhere; in an object store
    a file (the names reaching here are checked plain names, so nothing can point outside)."""
    if not path.is_file():
        return False
    if is_local(path):
        local = _local(path)
        return not local.is_symlink() and local.resolve().is_relative_to(_local(base).resolve())
    return True


def _local(path: StorePath) -> Any:
    from pathlib import Path

    return path if isinstance(path, Path) else Path(path.path)


def servable(folder: str, name: str) -> bool:
    return folder in FOLDERS and bool(_NAME.fullmatch(name)) and PurePosixPath(name).suffix in TYPES


def resolve(folder: str, name: str, root: StorePath | None = None) -> StorePath | None:
    """The file to send, or None (unknown folder, odd name, other suffix, missing, a link, or outside the folder)."""
    if not servable(folder, name):
        return None
    base = (reports_root() if root is None else root) / folder
    path = base / name
    return path if _plain_file(path, base) else None


CHUNK = 256 * 1024


def chunks(path: StorePath) -> Iterator[bytes]:
    """The file's bytes in pieces, for a streamed response (a report in an object store has no local file to
    hand to ``FileResponse``). Opened here, before the response starts: a file gone since :func:`resolve` is an
    error status, not a cut-off body."""
    fh = path.open("rb")

    def read() -> Iterator[bytes]:
        with fh:
            while block := fh.read(CHUNK):
                yield block

    return read()


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


def validation_root() -> StorePath:
    """Where the Data Docs are read from: ``<reports store>/validation`` when ``WRITEOFFS_REPORTS_STORE`` is set (the
    validation runs publish their sites there, :func:`writeoffs.validation.run.publish_docs`), else where they
    are built (``writeoffs.validation.config``: ``reports_dir``, as before)."""
    from writeoffs import report_store

    if report_store.configured():
        return reports_root() / "validation"
    from writeoffs.validation.config import load

    return load().reports_path()


def validation_listing(root: StorePath | None = None) -> tuple[list[str], list[DocsPage]]:
    """The sites (``<as-of>/<run>``, newest business date first) and every validation result page in them, newest
    first (at most :data:`LIST_MAX` pages)."""
    from writeoffs.validation.docs import validation_pages

    root = validation_root() if root is None else root
    sites: list[str] = []
    pages: list[DocsPage] = []
    if not root.is_dir():
        return sites, pages
    for day in sorted((d for d in root.iterdir() if _plain_dir(d)), key=lambda d: d.name, reverse=True):
        for site in sorted((s for s in day.iterdir() if _plain_dir(s)), key=lambda s: s.name):
            rel = f"{day.name}/{site.name}"
            if not (site / "index.html").is_file() or resolve_docs(rel + "/index.html", root) is None:
                continue
            sites.append(rel)
            for suite, run, when, path in validation_pages(site):
                if resolve_docs(f"{rel}/{path}", root) is not None:
                    pages.append(DocsPage(rel, suite, run, when, f"{rel}/{path}"))
    pages.sort(key=lambda p: (p.when, p.site, p.suite), reverse=True)
    return sites, pages[:LIST_MAX]


def _plain_dir(path: StorePath) -> bool:
    return path.is_dir() and not (is_local(path) and _local(path).is_symlink())


def resolve_docs(relative: str, root: StorePath | None = None) -> StorePath | None:
    """A file of a Data Docs site to send, or None: every path segment a plain name (no dot files, no ``..``), a
    known suffix, and on a local disk no links and inside the validation reports folder."""
    parts = relative.split("/")
    if not 1 <= len(parts) <= DOCS_DEPTH or not all(_SEGMENT.fullmatch(p) for p in parts):
        return None
    if PurePosixPath(parts[-1]).suffix not in DOCS_TYPES:
        return None
    base = validation_root() if root is None else root
    path = base.joinpath(*parts)
    if not path.is_file():
        return None
    if is_local(path):
        local, top = _local(path), _local(base)
        if any(p.is_symlink() for p in (local, *local.parents) if p != top and p.is_relative_to(top)):
            return None
        if not local.resolve().is_relative_to(top.resolve()):
            return None
    return path
