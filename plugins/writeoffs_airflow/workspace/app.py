"""The workspace FastAPI app: routes, authentication through Airflow's auth manager, authorisation by the ledger.

Authentication is Airflow's own dependency (:func:`airflow.api_fastapi.core_api.security.get_user`: the JWT of the
``Authorization: Bearer`` header, else the ``_token`` cookie the UI sets at login): no token -> 401, an invalid one
-> 403, as everywhere in Airflow's API. The identity is the authenticated user's name, never a query parameter.
Authorisation is :class:`~writeoffs_airflow.workspace.access.Access` (the ledger's eligible answerers and tier
members, plus configured readers). Errors are HTML pages with the status code (a 401 links to Airflow's login).

The routes live in :mod:`.routes`, one router per area (batches, reports, ledger figures); this module builds the
app, gives the routes their :class:`~.routes.common.Workspace` (``app.state.workspace``) and turns errors into pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from writeoffs_airflow.workspace.render import error_page
from writeoffs_airflow.workspace.routes import batches, ledger, reports
from writeoffs_airflow.workspace.routes.common import (
    DOCS_HEADERS,
    MAX_ID,
    MAX_PAGE,
    REASON_MAX,
    SECURITY_HEADERS,
    Workspace,
    html,
    prefix_of,
)
from writeoffs_airflow.workspace.routes.ledger import SUBLEDGER_FIELDS

__all__ = [
    "DOCS_HEADERS",
    "MAX_ID",
    "MAX_PAGE",
    "REASON_MAX",
    "SECURITY_HEADERS",
    "SUBLEDGER_FIELDS",
    "create_app",
    "default_engine",
]


@lru_cache(maxsize=1)
def default_engine():
    """The ledger of the deployment: Airflow connection ``writeoff_ledger`` (read in the api-server from Airflow's
    secrets backends and metadata DB), else ``WRITEOFFS_LEDGER_URL``, else the SQLite file of the data dir. The
    audit key: connection ``writeoff_audit_key``, else the environment (``writeoffs.audit_anchor``)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from writeoffs.audit_anchor import parse_key
    from writeoffs.db.engine import make_engine
    from writeoffs_airflow.connections import sqlalchemy_url
    from writeoffs_airflow.ledger import AUDIT_KEY_CONN_ID, LEDGER_CONN_ID

    try:  # the audit key (to show the chain's status) from the same place the tasks read it, else the environment
        key = Connection.get_connection_from_secrets(AUDIT_KEY_CONN_ID).password or ""
    except AirflowNotFoundException:
        key = ""
    audit_key = parse_key(key, f"Airflow connection {AUDIT_KEY_CONN_ID}") if key else None
    try:
        conn = Connection.get_connection_from_secrets(LEDGER_CONN_ID)
    except AirflowNotFoundException:  # not defined: the env / default applies (any other failure is raised, and
        return make_engine(None, audit_key=audit_key)  # not cached: never a silent fall-back to another ledger)
    return make_engine(sqlalchemy_url(conn), audit_key=audit_key)


def create_app(
    *,
    engine_factory: Callable[[], Any] | None = None,
    required_action: Callable[[Any], str | None] | None = None,
    reader_names: frozenset[str] | None = None,
) -> FastAPI:
    """Build the app. The arguments exist for tests (a ledger engine, the Required Action lookup, the readers);
    the plugin calls it without arguments."""
    from writeoffs_airflow.workspace.links import required_action_link

    app = FastAPI(title="Write-off workspace", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace = Workspace(
        engine_of=engine_factory or default_engine,
        action_of=required_action or required_action_link,
        reader_names=reader_names,
    )

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> Response:
        login = None
        if exc.status_code == 401:
            login = _login_url(str(request.url))
        body = error_page(exc.status_code, str(exc.detail), prefix=prefix_of(request), login=login)
        return html(body, exc.status_code)

    for area in (batches, reports, ledger):
        app.include_router(area.router)
    return app


def _login_url(next_url: str) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager in this process (unit tests): Airflow's default login route
        return "/auth/login"
