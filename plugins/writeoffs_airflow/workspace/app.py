"""The workspace FastAPI app: routes, authentication through Airflow's auth manager, authorisation by the ledger.

Authentication is Airflow's own dependency (:func:`airflow.api_fastapi.core_api.security.get_user`: the JWT of the
``Authorization: Bearer`` header, else the ``_token`` cookie the UI sets at login): no token -> 401, an invalid one
-> 403, as everywhere in Airflow's API. The identity is the authenticated user's name, never a query parameter.
Authorisation is :class:`~writeoffs_airflow.workspace.access.Access` (the ledger's eligible answerers and tier
members, plus configured readers). Errors are HTML pages with the status code (a 401 links to Airflow's login).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from writeoffs_airflow.workspace import pages, queries
from writeoffs_airflow.workspace.access import Access
from writeoffs_airflow.workspace.render import error_page

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


def _user_name(user: BaseUser) -> str:
    return str(user.get_name() or "").strip()


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
    engine_of = engine_factory or default_engine
    action_of = required_action or required_action_link

    def prefix_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def html(body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> Response:
        login = None
        if exc.status_code == 401:
            login = _login_url(str(request.url))
        body = error_page(exc.status_code, str(exc.detail), prefix=prefix_of(request), login=login)
        return html(body, exc.status_code)

    def access(conn, user: BaseUser) -> Access:
        return Access(conn, _user_name(user), reader_names)

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

    @app.get("/", include_in_schema=False)
    def home(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        return RedirectResponse(prefix_of(request) + "/queue", status_code=303)

    @app.get("/queue", response_class=HTMLResponse)
    def queue(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        with engine_of().connect() as conn:
            acc = access(conn, user)
            rows = acc.queue()
            if not rows and not acc.may_read_reports():
                raise HTTPException(403, f"{acc.user} is not an approver, confirmer or reader of write-offs")
            recent = acc.recent_batches()
        return html(pages.queue_page(rows, prefix=prefix_of(request), user=acc.user, recent=recent))

    @app.get("/batches/{batch_id}", response_class=HTMLResponse)
    def batch(
        request: Request,
        batch_id: int,
        page: int = 1,
        size: int = queries.DEFAULT_PAGE_SIZE,
        sort: str = "amount",
        dir: str = "desc",
        reason: str | None = None,
        user: BaseUser = Depends(get_user),
    ) -> Response:
        q = queries.PageQuery(
            page=min(max(page, 1), MAX_PAGE),
            size=size if size in queries.PAGE_SIZES else queries.DEFAULT_PAGE_SIZE,
            sort=sort if sort in queries.SORTS else "amount",
            descending=dir != "asc",
            reason=(reason or "")[:REASON_MAX] or None,
        )
        with engine_of().connect() as conn:
            acc = access(conn, user)
            b = the_batch(conn, acc, batch_id)
            result = queries.item_page(conn, b, q)
            answerers = acc.answerers_now(b)
        body = pages.batch_page(
            b,
            result,
            q,
            prefix=prefix_of(request),
            user=acc.user,
            required_action=action_of(b),
            answerers=answerers,
            may_answer=b.status in ("proposed", "awaiting_approval") and acc.user in answerers,
        )
        return html(body)

    @app.post("/batches/{batch_id}/answer", response_class=HTMLResponse)
    async def answer(request: Request, batch_id: int, user: BaseUser = Depends(get_user)) -> Response:
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

            with engine_of().connect() as conn:
                acc = access(conn, user)
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

    @app.get("/batches/{batch_id}/candidates.csv")
    def candidates(batch_id: int, user: BaseUser = Depends(get_user)) -> Response:
        engine = engine_of()
        with engine.connect() as conn:
            the_batch(conn, access(conn, user), batch_id)
        return StreamingResponse(
            queries.candidates_csv(engine, batch_id),
            media_type="text/csv; charset=utf-8",
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f'attachment; filename="batch_{int(batch_id)}_candidates.csv"',
            },
        )

    def reports_access(conn, user: BaseUser) -> Access:
        acc = access(conn, user)
        if not acc.may_read_reports():
            raise HTTPException(403, f"{acc.user} is not an approver, confirmer or reader of write-offs")
        return acc

    @app.get("/trail", response_class=HTMLResponse)
    def trail(request: Request, invoice: str = "", entity: str = "", user: BaseUser = Depends(get_user)) -> Response:
        from writeoffs.report import invoice_trail

        invoice, entity = invoice.strip()[:200], entity.strip()[:40]
        engine = engine_of()
        with engine.connect() as conn:
            acc = reports_access(conn, user)
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

    @app.get("/reconciliation", response_class=HTMLResponse)
    def reconciliation(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        with engine_of().connect() as conn:
            acc = reports_access(conn, user)
            view = queries.reconciliation(conn)
        return html(pages.reconciliation_page(view, prefix=prefix_of(request), user=acc.user))

    @app.get("/reports", response_class=HTMLResponse)
    def report_list(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        from writeoffs_airflow.workspace import reports

        with engine_of().connect() as conn:
            acc = reports_access(conn, user)
        return html(pages.reports_page(reports.listing(), prefix=prefix_of(request), user=acc.user))

    @app.get("/reports/{folder}/{name}")
    def report_file(folder: str, name: str, user: BaseUser = Depends(get_user)) -> Response:
        from writeoffs_airflow.workspace import reports

        with engine_of().connect() as conn:
            reports_access(conn, user)
        path = reports.resolve(folder, name)
        if path is None:
            raise HTTPException(404, "no such report")
        media, download = reports.TYPES[path.suffix]
        headers = dict(SECURITY_HEADERS)
        headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{path.name}"'
        # Streamed from the reports store (a local disk or an object store: there may be no local file to send).
        return StreamingResponse(reports.chunks(path), media_type=media, headers=headers)

    @app.get("/validation", response_class=HTMLResponse)
    def validation_docs(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        from writeoffs_airflow.workspace import reports

        with engine_of().connect() as conn:
            acc = reports_access(conn, user)
        sites, docs = reports.validation_listing()
        return html(pages.validation_page(sites, docs, prefix=prefix_of(request), user=acc.user))

    @app.get("/validation/files/{path:path}")
    def validation_file(path: str, user: BaseUser = Depends(get_user)) -> Response:
        from writeoffs_airflow.workspace import reports

        with engine_of().connect() as conn:
            reports_access(conn, user)
        found = reports.resolve_docs(path)
        if found is None:
            raise HTTPException(404, "no such Data Docs file")
        return StreamingResponse(
            reports.chunks(found), media_type=reports.DOCS_TYPES[found.suffix], headers=DOCS_HEADERS
        )

    @app.get("/subledger", response_class=HTMLResponse)
    def subledger(request: Request, user: BaseUser = Depends(get_user)) -> Response:
        """Balances as of a date and what changed between two dates, as known today or on a past day: the
        questions of the ``balance`` and ``changes`` CLI commands, answered by the same functions."""
        from writeoffs.errors import InputError
        from writeoffs_airflow.workspace import subledger_view

        form = {k: str(v)[:400] for k, v in request.query_params.items() if k in SUBLEDGER_FIELDS}
        engine = engine_of()
        with engine.connect() as conn:
            acc = reports_access(conn, user)
        try:
            ask = subledger_view.parse(form)
        except InputError as exc:  # a bad date or level: the form again with one clear line, status 400
            body = pages.subledger_page(form, None, None, prefix=prefix_of(request), user=acc.user, error=str(exc))
            return html(body, 400)
        result = None
        if ask.asked:
            with engine.connect() as raw:
                conn = _snapshot(raw)
                with conn.begin():
                    result = subledger_view.answer(conn, ask)
        return html(pages.subledger_page(form, ask, result, prefix=prefix_of(request), user=acc.user))

    def kpi_data(engine, period: str | None):
        """The month's report and charts, read in one snapshot (read-only repeatable read on PostgreSQL)."""
        from writeoffs import kpi_charts
        from writeoffs.kpi import Period, kpi_report

        with engine.connect() as raw:
            month = _month(period) or _month_of(queries.latest_business_date(raw))
            raw.rollback()
            p = Period.month(*month)
            conn = _snapshot(raw)
            with conn.begin():
                report = kpi_report(conn, p.start, p.end, previous=True)
                svgs = kpi_charts.render(kpi_charts.collect(conn, report))
        return p, report, svgs

    @app.get("/kpis", response_class=HTMLResponse)
    def kpis(request: Request, period: str | None = None, user: BaseUser = Depends(get_user)) -> Response:
        with engine_of().connect() as conn:
            acc = reports_access(conn, user)
        p, report, svgs = kpi_data(engine_of(), period)
        return html(pages.kpi_page(report, svgs, p.label, prefix=prefix_of(request), user=acc.user))

    @app.get("/kpis/charts/{name}.svg")
    def kpi_chart(name: str, period: str | None = None, user: BaseUser = Depends(get_user)) -> Response:
        with engine_of().connect() as conn:
            reports_access(conn, user)
        _, _, svgs = kpi_data(engine_of(), period)
        if name not in svgs:
            raise HTTPException(404, f"no chart {name[:40]!r}")
        return Response(svgs[name], media_type="image/svg+xml", headers=SECURITY_HEADERS)

    return app


#: The sub-ledger form's fields (anything else in the query string is ignored).
SUBLEDGER_FIELDS = ("as_of", "known_on", "level", "entity", "customer", "invoice", "currency", "from", "to")


def _snapshot(raw):
    """The connection for reads that must agree with each other (several queries, one page): a read-only
    repeatable-read transaction on PostgreSQL. On SQLite (single-machine deployments) the driver starts no
    transaction for reads, so each query sees the file as it is then."""
    if raw.dialect.name == "postgresql":
        return raw.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return raw


def _month(text: str | None) -> tuple[int, int] | None:
    """``YYYY-MM`` -> (year, month); anything else None (the default month applies)."""
    import re

    m = re.fullmatch(r"(\d{4})-(\d{2})", (text or "").strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1900:
        return None
    return int(m.group(1)), int(m.group(2))


def _month_of(day) -> tuple[int, int]:
    from datetime import date

    day = day or date.today()
    return day.year, day.month


def _login_url(next_url: str) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager in this process (unit tests): Airflow's default login route
        return "/auth/login"
