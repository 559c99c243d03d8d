"""Links into and out of the workspace: the plugin's URL of a batch's CSV, and a batch's Required Action in Airflow.

Cheap to import (the HITL operator calls :func:`batch_csv_url` when it writes a request body).
"""

from __future__ import annotations

import logging

#: Where the api-server mounts the workspace app (``AirflowPlugin.fastapi_apps[].url_prefix``).
URL_PREFIX = "/writeoffs"
APPROVAL_DAG_ID = "writeoff_approval"

log = logging.getLogger(__name__)


def airflow_base_url() -> str | None:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or None


def batch_url(batch_id: int, base_url: str | None = None) -> str | None:
    """``<[api] base_url>/writeoffs/batches/<id>``; None when Airflow's base URL is not configured."""
    base = base_url if base_url is not None else airflow_base_url()
    if not base:
        return None
    return f"{base.rstrip('/')}{URL_PREFIX}/batches/{int(batch_id)}"


def batch_csv_url(batch_id: int, base_url: str | None = None) -> str | None:
    """The full candidate list of a batch, as CSV over HTTP behind Airflow's login."""
    page = batch_url(batch_id, base_url)
    return f"{page}/candidates.csv" if page else None


def open_request(batch) -> tuple[str, str, int] | None:
    """(run id, task id, map index) of the approval run's mapped task instance labelled ``batch <id>`` that waits
    for input (Airflow's metadata DB, read in the api-server); None when the batch waits for nothing there."""
    if batch.status not in ("proposed", "awaiting_approval", "approved") or not batch.dag_run_id:
        return None
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(TI.task_id, TI.map_index)
            .where(
                TI.dag_id == APPROVAL_DAG_ID,
                TI.run_id == batch.dag_run_id,
                TI.rendered_map_index == f"batch {int(batch.id)}",
                TI.state == "awaiting_input",
            )
            .limit(1)
        ).first()
    return None if row is None else (batch.dag_run_id, row.task_id, row.map_index)


def required_action_link(batch) -> str | None:
    """The Airflow UI page answering the batch's open request (:func:`open_request`). Else Airflow's list of
    open required actions; None when the batch waits for nothing or Airflow's base URL is unknown."""
    if batch.status not in ("proposed", "awaiting_approval", "approved"):
        return None
    base = airflow_base_url()
    if not base:
        return None
    fallback = f"{base.rstrip('/')}/required_actions?response_received=false"
    try:
        from writeoffs_airflow.alerts import required_action_url

        found = open_request(batch)
        if found is None:
            return fallback
        run_id, task_id, map_index = found
        return required_action_url(APPROVAL_DAG_ID, run_id, task_id, map_index, base_url=base)
    except Exception:  # the metadata DB is Airflow's: a lookup failure must not take the batch page down
        log.exception("Required Action lookup for batch %s failed", batch.id)
        return fallback
