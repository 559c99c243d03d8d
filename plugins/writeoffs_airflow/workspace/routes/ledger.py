"""The ledger's figures: the point-in-time sub-ledger and the month's KPIs (page and charts), each read in one
snapshot."""

from __future__ import annotations

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

from writeoffs.db.engine import consistent_reads
from writeoffs_airflow.workspace import pages, queries
from writeoffs_airflow.workspace.routes.common import SECURITY_HEADERS, Workspace, html, prefix_of, workspace_of

router = APIRouter()


@router.get("/subledger", response_class=HTMLResponse)
def subledger(request: Request, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)) -> Response:
    """Balances as of a date and what changed between two dates, as known today or on a past day: the
    questions of the ``balance`` and ``changes`` CLI commands, answered by the same functions."""
    from writeoffs.errors import InputError
    from writeoffs_airflow.workspace import subledger_view

    form = {k: str(v)[:400] for k, v in request.query_params.items() if k in SUBLEDGER_FIELDS}
    engine = ws.engine_of()
    with engine.connect() as conn:
        acc = ws.reports_access(conn, user)
    try:
        ask = subledger_view.parse(form)
    except InputError as exc:  # a bad date or level: the form again with one clear line, status 400
        body = pages.subledger_page(form, None, None, prefix=prefix_of(request), user=acc.user, error=str(exc))
        return html(body, 400)
    result = None
    if ask.asked:
        with engine.connect() as raw:
            conn = consistent_reads(raw)
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
        conn = consistent_reads(raw)
        with conn.begin():
            report = kpi_report(conn, p.start, p.end, previous=True)
            svgs = kpi_charts.render(kpi_charts.collect(conn, report))
    return p, report, svgs


@router.get("/kpis", response_class=HTMLResponse)
def kpis(
    request: Request,
    period: str | None = None,
    user: BaseUser = Depends(get_user),
    ws: Workspace = Depends(workspace_of),
) -> Response:
    with ws.engine_of().connect() as conn:
        acc = ws.reports_access(conn, user)
    p, report, svgs = kpi_data(ws.engine_of(), period)
    return html(pages.kpi_page(report, svgs, p.label, prefix=prefix_of(request), user=acc.user))


@router.get("/kpis/charts/{name}.svg")
def kpi_chart(
    name: str, period: str | None = None, user: BaseUser = Depends(get_user), ws: Workspace = Depends(workspace_of)
) -> Response:
    with ws.engine_of().connect() as conn:
        ws.reports_access(conn, user)
    _, _, svgs = kpi_data(ws.engine_of(), period)
    if name not in svgs:
        raise HTTPException(404, f"no chart {name[:40]!r}")
    return Response(svgs[name], media_type="image/svg+xml", headers=SECURITY_HEADERS)


#: The sub-ledger form's fields (anything else in the query string is ignored).
SUBLEDGER_FIELDS = ("as_of", "known_on", "level", "entity", "customer", "invoice", "currency", "from", "to")


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
