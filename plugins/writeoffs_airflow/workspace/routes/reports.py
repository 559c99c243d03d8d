"""The reading routes: an invoice's trail, reconciliation, the report files and the validation Data Docs."""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from writeoffs_airflow.workspace import pages, queries
from writeoffs_airflow.workspace.routes.common import (
    DOCS_HEADERS,
    SECURITY_HEADERS,
    Workspace,
    html,
    prefix_of,
    workspace_of,
)

router = APIRouter()


@router.get("/trail", response_class=HTMLResponse)
def trail(
    request: Request,
    invoice: str = "",
    entity: str = "",
    user: BaseUser = Depends(get_user),
    ws: Workspace = Depends(workspace_of),
) -> Response:
    from writeoffs.report import invoice_trail

    invoice, entity = invoice.strip()[:200], entity.strip()[:40]
    engine = ws.engine_of()
    with engine.connect() as conn:
        acc = ws.reports_access(conn, user)
    text, rows, chain = None, [], None
    if invoice:
        from writeoffs.audit_anchor import chain_status
        from writeoffs.report import invoice_audit_rows

        text = invoice_trail(engine, invoice, entity or None)
        with engine.connect() as conn:
            rows = invoice_audit_rows(conn, invoice, entity or None)
        chain = chain_status(engine, [r.id for r in rows])
    body = pages.trail_page(invoice, entity, text, prefix=prefix_of(request), user=acc.user, audit_rows=rows,
                            chain=chain)  # fmt: skip
    return html(body)


@router.get("/reconciliation", response_class=HTMLResponse)
def reconciliation(
    request: Request, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    with ws.engine_of().connect() as conn:
        acc = ws.reports_access(conn, user)
        view = queries.reconciliation(conn)
    return html(pages.reconciliation_page(view, prefix=prefix_of(request), user=acc.user))


@router.get("/reports", response_class=HTMLResponse)
def report_list(
    request: Request, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    from writeoffs_airflow.workspace import reports

    with ws.engine_of().connect() as conn:
        acc = ws.reports_access(conn, user)
    return html(pages.reports_page(reports.listing(), prefix=prefix_of(request), user=acc.user))


@router.get("/reports/{folder}/{name}")
def report_file(
    folder: str, name: str, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    from writeoffs_airflow.workspace import reports

    with ws.engine_of().connect() as conn:
        ws.reports_access(conn, user)
    path = reports.resolve(folder, name)
    if path is None:
        raise HTTPException(404, "no such report")
    media, download = reports.TYPES[path.suffix]
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{path.name}"'
    # Streamed from the reports store (a local disk or an object store: there may be no local file to send).
    return StreamingResponse(reports.chunks(path), media_type=media, headers=headers)


@router.get("/validation", response_class=HTMLResponse)
def validation_docs(
    request: Request, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    from writeoffs_airflow.workspace import reports

    with ws.engine_of().connect() as conn:
        acc = ws.reports_access(conn, user)
    sites, docs = reports.validation_listing()
    return html(pages.validation_page(sites, docs, prefix=prefix_of(request), user=acc.user))


@router.get("/validation/files/{path:path}")
def validation_file(path: str, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)) -> Response:
    from writeoffs_airflow.workspace import reports

    with ws.engine_of().connect() as conn:
        ws.reports_access(conn, user)
    found = reports.resolve_docs(path)
    if found is None:
        raise HTTPException(404, "no such Data Docs file")
    return StreamingResponse(reports.chunks(found), media_type=reports.DOCS_TYPES[found.suffix], headers=DOCS_HEADERS)
