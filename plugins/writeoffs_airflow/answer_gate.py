"""The answer gate: the api-server asks the ledger *before* Airflow takes an answer to a write-off request.

Airflow 3.3 accepts any answer from an assigned user and resumes the task; the ledger's checks (segregation of
duties, tier entitlement and limits, exclusions that must name the batch's invoices) run in the task afterwards.
An answer refused there has already closed the request, and Airflow keeps a request's text as first written, so the
request could not say why it was re-opened. This ASGI middleware, installed in the api-server by the workspace
plugin (``fastapi_root_middlewares``), runs the same checks first:

- ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/{map_index}/hitlDetails`` of an open request of a
  write-off batch (an approval operator's task: a rendered ``batch_id`` and an Approve or Confirm option), sent by
  a user Airflow authenticates from the same token or cookie its own route reads and who may answer requests of
  that DAG at all;
- :func:`writeoffs_airflow.answers.take_answer` with ``dry_run``: the rules of
  :func:`writeoffs.approvals.record_decision`, audited (``approval.refused``) exactly like a refusal in the task;
- refused: the request stays open, its text gets at the top who was refused, why, until when it stays open and who
  may decide (replacing an earlier refusal's note), and the answer gets 403 (the person may not answer) or 422 (what
  they answered cannot be taken) with the same words. Airflow never sees the answer.

Everything else passes through untouched, and so does any error of the gate itself (logged): the gate only refuses,
it never accepts. What is recorded is decided in the task, which checks every answer again, so an answer that gets
past the gate (the batch changed in between) is still refused there.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

PATH = re.compile(
    r"/api/v2/dags/(?P<dag_id>[^/]+)/dagRuns/(?P<run_id>[^/]+)/taskInstances/(?P<task_id>[^/]+)"
    r"/(?P<map_index>-?\d+)/hitlDetails/?$"
)
#: An answer body larger than this is not inspected (Airflow and the task still check it).
MAX_BODY = 4 * 1024 * 1024
COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class AnswerGate:
    """ASGI middleware (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = PATH.search(scope.get("path", "")) if scope["type"] == "http" and scope["method"] == "PATCH" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        replay = _replaying(body, receive)
        verdict = None
        if complete:
            try:
                verdict = await _judge(scope, match, body)
            except Exception:  # the gate never blocks an answer by failing: the task checks it anyway
                log.exception("Answer gate: could not check the answer; Airflow and the task decide")
        if verdict is None:
            await self.app(scope, replay, send)
            return
        from starlette.responses import JSONResponse

        status, detail = verdict
        await JSONResponse({"detail": detail}, status_code=status)(scope, replay, send)


async def _read_body(receive: Any) -> tuple[bytes, bool]:
    """The whole request body (the app still gets all of it), and whether it is complete and small enough
    (:data:`MAX_BODY`) to inspect."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # the client went away
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            body = b"".join(chunks)
            return body, len(body) <= MAX_BODY


def _replaying(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _judge(scope: Any, match: re.Match[str], body: bytes) -> tuple[int, str] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None  # Airflow answers it (422)
    options = payload.get("chosen_options") if isinstance(payload, dict) else None
    if not (isinstance(options, list) and len(options) == 1 and isinstance(options[0], str)):
        return None  # not a single option: Airflow refuses it (400/422) before anything is recorded
    user = await _authenticated(scope)
    if user is None:
        return None  # Airflow answers 401/403 itself
    dag_id = match["dag_id"]
    if not _may_answer_in_dag(user, dag_id):
        return None  # Airflow's 403: no word about the batch to someone who may not see it

    import anyio.to_thread

    return await anyio.to_thread.run_sync(
        _check,
        dag_id,
        match["run_id"],
        match["task_id"],
        int(match["map_index"]),
        options[0],
        payload.get("params_input"),
        str(user.get_name() or user.get_id()),
    )


async def _authenticated(scope: Any) -> Any:
    """The user Airflow's own route would see: the Bearer token, else the UI's session cookie."""
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException
    from starlette.requests import Request

    request = Request(scope)
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE)
    try:
        return await resolve_user_from_token(token)
    except HTTPException:
        return None


def _may_answer_in_dag(user: Any, dag_id: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return bool(
        get_auth_manager().is_authorized_dag(
            method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, details=DagDetails(id=dag_id), user=user
        )
    )


def _check(
    dag_id: str, run_id: str, task_id: str, map_index: int, option: str, params: Any, user_name: str
) -> tuple[int, str] | None:
    from datetime import UTC, datetime

    from writeoffs.approval_view import refusal_lines, refusal_markdown
    from writeoffs.errors import ApprovalError
    from writeoffs_airflow.answers import AnswerRefused, refusal_facts, take_answer
    from writeoffs_airflow.hitl import batch_tiers
    from writeoffs_airflow.ledger import ledger_engine

    found = _open_request(dag_id, run_id, task_id, map_index, option)
    if found is None:
        return None
    ti_id, batch_id, step, deadline = found
    engine = ledger_engine()
    tiers = batch_tiers(engine, batch_id)
    try:
        take_answer(
            engine,
            batch_id=batch_id,
            step=step,
            approver=user_name,
            option=option,
            params=params,
            tiers=tiers,
            dry_run=True,
        )
    except ApprovalError as exc:
        log.info("Answer gate: batch %s: %s; the task fails the step", batch_id, exc)
        return None  # no other answer can cure it (e.g. the items changed): Airflow takes it, the task fails
    except AnswerRefused as refused:
        log.warning(
            "Answer gate: %s answer by %r to batch %s refused before Airflow took it: %s",
            step,
            user_name,
            batch_id,
            refused.reason,
        )
        facts = refusal_facts(
            engine,
            batch_id=batch_id,
            step=step,
            tiers=tiers,
            refused=user_name,
            reason=refused.reason,
            deadline=deadline,
            now=datetime.now(UTC),
        )
        try:
            _note(ti_id, refusal_markdown(**facts))
        except Exception:  # refused and audited all the same; only the note is missing
            log.exception("Answer gate: could not write the refusal note on the request of batch %s", batch_id)
        return (403 if refused.who else 422), " ".join(refusal_lines(**facts))  # type: ignore[arg-type]
    return None


def _open_request(dag_id: str, run_id: str, task_id: str, map_index: int, option: str) -> tuple | None:
    """(task instance id, batch id, step, deadline) of an open write-off request offering ``option``; else None."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    from writeoffs_airflow.answers import APPROVE, CONFIRM, step_of

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
            .options(joinedload(TaskInstance.hitl_detail), joinedload(TaskInstance.rendered_task_instance_fields))
        )
        request = ti.hitl_detail if ti is not None else None
        if request is None or request.response_received:
            return None  # Airflow answers: not found, or already answered (409)
        offered = list(request.options or [])
        if option not in offered or not ({APPROVE, CONFIRM} & set(offered)):
            return None  # an option Airflow refuses (400), or not a write-off batch request
        rendered = ti.rendered_task_instance_fields.rendered_fields if ti.rendered_task_instance_fields else {}
        batch_id = _int(rendered.get("batch_id"))
        if batch_id is None:
            return None
        return ti.id, batch_id, step_of(offered), _deadline(ti.next_kwargs)


def _note(ti_id: Any, block: str) -> None:
    """Put the refusal note at the top of the request's text (replacing an earlier one)."""
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from writeoffs.approval_view import with_refusal

    with create_session() as session:
        request = session.scalar(select(HITLDetail).where(HITLDetail.ti_id == ti_id).with_for_update())
        if request is not None:
            request.body = with_refusal(request.body or "", block)


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _deadline(next_kwargs: Any) -> Any:
    """The request's deadline from the parked task's resume arguments (``BatchDecisionOperator`` puts it there),
    as Airflow stores them: plain, or in its serialised ``{"__var": ...}`` form; None if not there."""
    from datetime import datetime

    value: Any = next_kwargs
    for _ in range(3):
        if isinstance(value, dict) and "__var" in value:
            value = value["__var"]
    if not isinstance(value, dict):
        return None
    value = value.get("deadline")
    if isinstance(value, dict):
        value = value.get("__var")
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when if when is not None and when.tzinfo is not None else None
