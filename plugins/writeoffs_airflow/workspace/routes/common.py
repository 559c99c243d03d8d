"""What every route shares: the response headers and input limits, the app's :class:`Workspace` (ledger engine,
Required Action lookup, configured readers) and the checks that a user may see a batch or the reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from writeoffs_airflow.workspace import queries
from writeoffs_airflow.workspace.access import Access

#: Headers of every response: nothing cached, nothing sniffed, no script, no external resource, framed by Airflow only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
}
#: Validation Data Docs: the site's own stylesheets, images and fonts; still no script and nothing from elsewhere.
DOCS_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
        "form-action 'none'; frame-ancestors 'self'; base-uri 'none'"
    ),
}
MAX_PAGE = 1_000_000
MAX_ID = 2**63 - 1  # a batch id beyond the BIGINT range is not an error, just not there
REASON_MAX = 64


def _user_name(user: BaseUser) -> str:
    return str(user.get_name() or "").strip()


def prefix_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


@dataclass(frozen=True)
class Workspace:
    """What the routes of one app share (set by ``create_app`` on ``app.state``): the ledger engine, the Required
    Action lookup and the configured readers."""

    engine_of: Callable[[], Any]
    action_of: Callable[[Any], str | None]
    reader_names: frozenset[str] | None

    def access(self, conn, user: BaseUser) -> Access:
        return Access(conn, _user_name(user), self.reader_names)

    def reports_access(self, conn, user: BaseUser) -> Access:
        acc = self.access(conn, user)
        if not acc.may_read_reports():
            raise HTTPException(403, f"{acc.user} is not an approver, confirmer or reader of write-offs")
        return acc


def workspace_of(request: Request) -> Workspace:
    """The :class:`Workspace` of the app serving the request (a route dependency)."""
    return request.app.state.workspace


def the_batch(conn, acc: Access, batch_id: int):
    batch = queries.batch_row(conn, batch_id) if 0 < batch_id <= MAX_ID else None
    if batch is None:
        raise HTTPException(404, f"write-off batch {batch_id} does not exist")
    if not acc.may_view_batch(batch):
        raise HTTPException(
            403,
            f"{acc.user} may not see batch {batch_id} (tier {batch.tier}, {batch.status}): only those who may "
            "answer it now, or the people of its tier once decided",
        )
    return batch
