"""The approver's routes: my queue, a batch's items, an answer sent from the workspace, the candidates CSV."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from writeoffs_airflow.workspace import pages, queries
from writeoffs_airflow.workspace.routes.common import (
    MAX_PAGE,
    REASON_MAX,
    SECURITY_HEADERS,
    Workspace,
    _user_name,
    html,
    prefix_of,
    the_batch,
    workspace_of,
)

router = APIRouter()


@router.get("/", include_in_schema=False)
def home(request: Request, user: BaseUser = Depends(get_user)) -> Response:
    return RedirectResponse(prefix_of(request) + "/queue", status_code=303)


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)) -> Response:
    with ws.engine_of().connect() as conn:
        acc = ws.access(conn, user)
        rows = acc.queue()
        if not rows and not acc.may_read_reports():
            raise HTTPException(403, f"{acc.user} is not an approver, confirmer or reader of write-offs")
        recent = acc.recent_batches()
    return html(pages.queue_page(rows, prefix=prefix_of(request), user=acc.user, recent=recent))


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch(
    request: Request,
    batch_id: int,
    page: int = 1,
    size: int = queries.DEFAULT_PAGE_SIZE,
    sort: str = "amount",
    dir: str = "desc",
    reason: str | None = None,
    user: BaseUser = Depends(get_user),
    ws: Workspace = Depends(workspace_of),
) -> Response:
    q = queries.PageQuery(
        page=min(max(page, 1), MAX_PAGE),
        size=size if size in queries.PAGE_SIZES else queries.DEFAULT_PAGE_SIZE,
        sort=sort if sort in queries.SORTS else "amount",
        descending=dir != "asc",
        reason=(reason or "")[:REASON_MAX] or None,
    )
    with ws.engine_of().connect() as conn:
        acc = ws.access(conn, user)
        b = the_batch(conn, acc, batch_id)
        result = queries.item_page(conn, b, q)
        answerers = acc.answerers_now(b)
    body = pages.batch_page(
        b,
        result,
        q,
        prefix=prefix_of(request),
        user=acc.user,
        required_action=ws.action_of(b),
        answerers=answerers,
        may_answer=b.status in ("proposed", "awaiting_approval") and acc.user in answerers,
    )
    return html(body)


@router.post("/batches/{batch_id}/answer", response_class=HTMLResponse)
async def answer(
    request: Request, batch_id: int, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    from starlette.concurrency import run_in_threadpool

    from writeoffs_airflow.workspace import answer as ans

    own = f"{request.url.scheme}://{request.url.netloc}"
    if not ans.same_origin(request.headers.get("origin"), request.headers.get("referer"), own):
        raise HTTPException(403, "answers are accepted from the workspace's own pages only")
    form = await request.form()
    decision = str(form.get("decision") or "")
    if decision not in ans.OPTIONS:
        raise HTTPException(400, "choose Approve or Reject")
    exclude = [str(v)[:200] for v in form.getlist("exclude")][: ans.EXCLUDE_MAX]
    comment = str(form.get("comment") or "").strip()[: ans.COMMENT_MAX] or None
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    token = token or request.cookies.get("_token") or ""

    def send() -> tuple[int, str, Any]:
        from writeoffs_airflow.workspace.links import APPROVAL_DAG_ID, airflow_base_url, open_request

        with ws.engine_of().connect() as conn:
            acc = ws.access(conn, user)
            b = the_batch(conn, acc, batch_id)
        if b.status not in ("proposed", "awaiting_approval"):
            raise HTTPException(409, f"batch {batch_id} is {b.status}: no approval to answer")
        found = open_request(b)
        base = airflow_base_url()
        if found is None or not base or not found[1].split(".")[-1].startswith("approve"):
            raise HTTPException(409, f"batch {batch_id} has no open approval request in Airflow right now")
        sent = ans.forward(
            base_url=base,
            token=token,
            dag_id=APPROVAL_DAG_ID,
            request=found,
            decision=decision,
            exclude=exclude,
            comment=comment,
        )
        return sent.status, sent.message, b

    status, message, b = await run_in_threadpool(send)
    return html(
        pages.answer_page(b, status, message, decision, exclude, prefix=prefix_of(request), user=_user_name(user)),
        200 if status == 200 else status,
    )


@router.get("/batches/{batch_id}/candidates.csv")
def candidates(batch_id: int, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)) -> Response:
    engine = ws.engine_of()
    with engine.connect() as conn:
        the_batch(conn, ws.access(conn, user), batch_id)
    return StreamingResponse(
        queries.candidates_csv(engine, batch_id),
        media_type="text/csv; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="batch_{int(batch_id)}_candidates.csv"',
        },
    )
