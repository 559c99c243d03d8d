"""Make a GX Data Docs site work offline, and give it an index that lists every page on disk.

GX's HTML pulls Bootstrap, jQuery, Font Awesome and Vega from CDNs, and its index page is a table that a script
fills in. Offline (and under the workspace's no-script policy) that shows nothing. So, after every build:

- every page loses its ``<script>`` elements and its stylesheets from other hosts, and any remaining link to another
  host becomes plain text (the content is server-rendered HTML tables: it reads fine without them); a small inline
  stylesheet keeps the tables legible;
- ``index.html`` is rewritten from the files on disk: every validation result page and expectation suite page of the
  site, newest first. GX's own index lists only the results of the context that built it, and its clean-up deletes
  the pages of earlier builds into the same site; :func:`writeoffs.validation.gx.run_suites` therefore builds
  without GX's index (``build_index=False``: nothing deleted) and calls :func:`finish_site`.

Plain text processing of files GX wrote: no GX import here.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_EXTERNAL_LINK_TAG = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)
_EXTERNAL_ANCHOR = re.compile(
    r"<a\b[^>]*\bhref\s*=\s*[\"'](?:https?:)?//[^\"']*[\"'][^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL
)
#: Any absolute URL left (in text, attributes or inline styles): its scheme and slashes are dropped.
_URL = re.compile(r"(?:https?:)?//(?=[A-Za-z0-9.-]+\.[A-Za-z]{2,})", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]*\)", re.IGNORECASE)
MARK = "<!-- writeoffs: offline -->"
STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1rem;color:#1a202c}table{border-collapse:collapse;"
    "margin:.5rem 0}th,td{border:1px solid #e2e8f0;padding:.25rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f8fafc}.text-danger{color:#b91c1c}.text-success{color:#15803d}.hide,.d-none{display:none}"
    "img{max-width:12rem}</style>"
)


def offline(text: str) -> str:
    """The page without scripts, without anything fetched from another host and without links leaving the site."""
    if MARK in text:
        return text
    text = _SCRIPT.sub("", text)
    text = _EXTERNAL_LINK_TAG.sub("", text)
    text = _EXTERNAL_ANCHOR.sub(r"<span>\1</span>", text)
    text = _URL.sub("", text)
    head = re.search(r"<head\b[^>]*>", text, re.IGNORECASE)
    at = head.end() if head else 0
    return text[:at] + MARK + STYLE + text[at:]


def finish_site(site: Path) -> Path:
    """Make every HTML page and stylesheet of ``site`` offline and (re)write its index from the pages on disk.

    Returns the index path."""
    for page in site.rglob("*.html"):
        if page.name == "index.html" and page.parent == site:
            continue
        text = page.read_text(encoding="utf-8")
        done = offline(text)
        if done != text:
            page.write_text(done, encoding="utf-8")
    for sheet in site.rglob("*.css"):  # GX's stylesheet draws its logo from a bucket on the internet
        text = sheet.read_text(encoding="utf-8")
        done = _CSS_URL.sub("none", text)
        if done != text:
            sheet.write_text(done, encoding="utf-8")
    index = site / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(index_page(site), encoding="utf-8")
    tmp.replace(index)
    return index


def validation_pages(site: Path) -> list[tuple[str, str, str, str]]:
    """(suite, run name, run time, path relative to the site) of every validation result page, newest first."""
    out = []
    base = site / "validations"
    if base.is_dir():
        for page in base.rglob("*.html"):
            parts = page.relative_to(base).parts
            if len(parts) >= 4:  # <suite>/<run name>/<run time>/<batch>.html
                out.append((parts[0], parts[1], parts[2], page.relative_to(site).as_posix()))
    out.sort(key=lambda p: (p[2], p[0]), reverse=True)
    return out


def index_page(site: Path) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><td><a href="{esc(rel)}">{esc(suite)}</a></td><td>{esc(run)}</td><td>{esc(_when(stamp))}</td>'
        f"<td>{esc(Path(rel).stem)}</td></tr>"
        for suite, run, stamp, rel in validation_pages(site)
    )
    suites = sorted((site / "expectations").glob("*.html")) if (site / "expectations").is_dir() else []
    suite_rows = "".join(
        f'<li><a href="expectations/{esc(p.name)}">{esc(p.stem)}</a></li>' for p in suites if not p.is_symlink()
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{MARK}{STYLE}'
        f"<title>Validation results</title></head><body><h1>Validation results</h1>"
        "<p>Every validation result page of this site, newest first (pages of earlier builds included).</p>"
        '<table id="validation-results"><thead><tr><th>Suite</th><th>Run</th><th>Run time (UTC)</th>'
        f"<th>Batch</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>Expectation suites</h2><ul>{suite_rows}</ul></body></html>"
    )


def _when(stamp: str) -> str:
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp
