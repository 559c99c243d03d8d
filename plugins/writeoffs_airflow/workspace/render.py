"""HTML building blocks for the workspace pages: every value goes through :func:`esc` (or :func:`cut`).

No template engine, no script, no external resource (the pages work offline and inside Airflow's iframe). Source
data (customer names, invoice refs, evidence, break messages, even the user's own name) is hostile: it is escaped
for HTML text and attributes alike, and long values are cut (:func:`writeoffs.errors.shorten`). Links are built
from the mount prefix and URL-encoded query values only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from urllib.parse import quote, urlencode

from writeoffs.errors import shorten
from writeoffs.money import quantum

#: Longest text shown in a table cell (the CSV has everything).
CELL_MAX = 80

CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#1a202c;background:#fff;font-size:14px}
nav{display:flex;gap:1rem;padding:.6rem 1rem;background:#f1f5f9;border-bottom:1px solid #cbd5e1;align-items:center}
nav a{color:#1e40af;text-decoration:none;font-weight:600}nav a.active{text-decoration:underline}
nav .who{margin-left:auto;color:#475569}main{padding:1rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #e2e8f0;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#f8fafc}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#64748b}.warn{color:#b45309}.bad{color:#b91c1c}.ok{color:#15803d}
form.inline{display:inline-flex;gap:.5rem;align-items:center;margin:.5rem 0}
div.inline{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.5rem 0}
.pager a,.pager span{margin-right:.75rem}dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}
dl.facts dt{color:#475569}dl.facts dd{margin:0}pre{white-space:pre-wrap;background:#f8fafc;padding:.5rem}
svg{max-width:100%;height:auto}.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts figure{margin:0}
"""

NAV = (
    ("queue", "My queue", "/queue"),
    ("trail", "Invoice trail", "/trail"),
    ("reconciliation", "Reconciliation", "/reconciliation"),
    ("subledger", "Sub-ledger", "/subledger"),
    ("kpis", "KPIs", "/kpis"),
    ("reports", "Reports", "/reports"),
    ("validation", "Validation", "/validation"),
)


def esc(value: object) -> str:
    """Text for HTML content and quoted attributes; None is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def cut(value: object, limit: int = CELL_MAX) -> str:
    """Escaped and cut to ``limit`` characters, on one line."""
    return esc(shorten(str(value), limit)) if value is not None else ""


def money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "-"
    try:
        q = amount.quantize(quantum(currency))
    except Exception:  # an unknown currency code from the source: show the ledger's scale
        q = amount
    return f"{q:,} {esc(currency)}"


def href(prefix: str, path: str, query: Mapping[str, object] | None = None) -> str:
    """An escaped attribute value: ``prefix`` + ``path`` (segments already safe) + the encoded query."""
    q = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return esc(prefix + path + (f"?{urlencode(q)}" if q else ""))


def seg(value: object) -> str:
    """One URL path segment from data."""
    return quote(str(value), safe="")


def page(title: str, body: str, *, prefix: str, user: str, active: str | None = None, status: str = "") -> str:
    links = "".join(
        f'<a id="nav-{key}" data-testid="nav-{key}" href="{href(prefix, path)}"'
        + (' class="active" aria-current="page"' if key == active else "")
        + f">{esc(label)}</a>"
        for key, label, path in NAV
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Write-offs</title><style>{CSS}</style></head><body>"
        f'<nav id="workspace-nav" data-testid="workspace-nav">{links}'
        f'<span class="who" id="signed-in-user" data-testid="signed-in-user">{cut(user, 60)}</span></nav>'
        f'<main id="content" data-page="{esc(active or status)}"><h1 id="page-title">{esc(title)}</h1>{body}</main>'
        "</body></html>"
    )


def table(
    table_id: str,
    header: Sequence[tuple[str, str]],
    rows: Iterable[Sequence[str]],
    *,
    row_attrs: Iterable[str] | None = None,
    empty: str = "Nothing to show.",
) -> str:
    """``header``: (label, css class) pairs, labels escaped here; ``rows``: cells already escaped by the caller."""
    head = "".join(f'<th class="{esc(cls)}" scope="col">{esc(label)}</th>' for label, cls in header)
    attrs = iter(row_attrs) if row_attrs is not None else None
    body = []
    for cells in rows:
        extra = next(attrs) if attrs is not None else ""
        tds = "".join(f'<td class="{esc(header[k][1])}">{c}</td>' for k, c in enumerate(cells))
        body.append(f"<tr{extra}>{tds}</tr>")
    if not body:
        body.append(f'<tr class="empty"><td colspan="{len(header)}" class="muted">{esc(empty)}</td></tr>')
    return (
        f'<table id="{esc(table_id)}" data-testid="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def facts(items: Sequence[tuple[str, str]], facts_id: str = "facts") -> str:
    """A definition list; values already escaped by the caller."""
    inner = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts" id="{esc(facts_id)}" data-testid="{esc(facts_id)}">{inner}</dl>'


def error_page(status: int, message: str, *, prefix: str, user: str = "", login: str | None = None) -> str:
    titles = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 422: "Bad request"}
    body = f'<p id="error" data-testid="error" data-status="{status}">{cut(message, 300)}</p>'
    if login:
        body += f'<p><a id="login-link" data-testid="login-link" href="{esc(login)}">Sign in to Airflow</a></p>'
    return page(titles.get(status, "Error"), body, prefix=prefix, user=user, status=str(status))
