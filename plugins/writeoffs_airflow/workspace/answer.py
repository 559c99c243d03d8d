"""Answering the approve step from the workspace: invoices picked with checkboxes are excluded.

The answer goes through Airflow's own Human-in-the-loop API as the signed-in user (their token is forwarded), so
exactly the same checks apply as in the Required Action form: Airflow refuses anyone not assigned (403), and the
approval operator records the decision in the ledger, refusing what the ledger refuses. The workspace never records a
decision itself and never names a person: who answered is whoever Airflow authenticated.

A form post carries the session cookie, so the request must come from this site (``Origin`` or ``Referer`` of
the same origin): another site cannot make a signed-in approver answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

#: What the form's buttons send -> the approval request's options (writeoffs_airflow.hitl).
OPTIONS = {"approve": "Approve", "reject": "Reject"}
COMMENT_MAX = 2000
EXCLUDE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Sent:
    status: int
    message: str


def same_origin(origin: str | None, referer: str | None, own: str) -> bool:
    """``own`` is this request's ``scheme://host[:port]``; the Origin header, else the Referer, must match it."""
    claimed = origin or referer
    if not claimed or claimed == "null":
        return False
    parts = urlsplit(claimed)
    return f"{parts.scheme}://{parts.netloc}" == own.rstrip("/")


def forward(
    *,
    base_url: str,
    token: str,
    dag_id: str,
    request: tuple[str, str, int],
    decision: str,
    exclude: Sequence[str],
    comment: str | None,
) -> Sent:
    """PATCH the request's hitlDetails on Airflow's REST API with the user's own token."""
    import httpx

    run_id, task_id, map_index = request
    url = (
        f"{base_url.rstrip('/')}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        f"/taskInstances/{quote(task_id, safe='')}/{int(map_index)}/hitlDetails"
    )
    body = {
        "chosen_options": [OPTIONS[decision]],
        "params_input": {"exclude_invoice_refs": list(exclude) or None, "comment": comment or None},
    }
    r = httpx.patch(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    try:
        detail = r.json().get("detail")
    except ValueError:
        detail = None
    return Sent(r.status_code, str(detail or r.reason_phrase))
