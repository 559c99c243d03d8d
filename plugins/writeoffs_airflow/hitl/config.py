"""What an approval request is made of: the tiers that govern the batch, the ledger engine, the reports store and
the link to the candidate list, the assigned users and the form's fields."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import Param

from writeoffs_airflow.answers import COMMENT_PARAM, EXCLUDE_PARAM

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from sqlalchemy import Engine

    from writeoffs.tiers import Tier


def _engine() -> Engine:
    from writeoffs_airflow.ledger import ledger_engine

    return ledger_engine()


def batch_tiers(engine: Engine, batch_id: int) -> tuple[Tier, ...]:
    """The tiers of the policy version recorded on the batch, ``auto`` first: they govern its approval and posting,
    not the policy file as it is now (editing it after selection changes nothing for existing batches)."""
    from writeoffs.approvals import governing_tiers

    with engine.connect() as conn:
        return governing_tiers(conn, batch_id)


def reports_dir() -> ObjectStoragePath:
    """The reports store (``WRITEOFFS_REPORTS_STORE``, default ``$WRITEOFFS_DATA_DIR/reports``): the candidate
    list is written there, so it does not live only on the worker that ran the request."""
    from writeoffs_airflow.storage import reports_root

    return reports_root()


def candidates_link(path: ObjectStoragePath | Path, batch_id: int | None = None) -> str:
    """Where the approver finds the full list: the workspace plugin's CSV download of the batch over HTTP, behind
    Airflow's login (``<[api] base_url>/writeoffs/batches/<id>/candidates.csv``); without a base URL,
    ``$WRITEOFFS_REPORTS_URL/<path in the reports store>`` if set, else a file URL (local store) or the store's
    own URL (``s3://...``)."""
    from writeoffs.report_store import is_local, location

    if batch_id is not None:
        from writeoffs_airflow.workspace.links import batch_csv_url

        url = batch_csv_url(batch_id)
        if url:
            return url
    where = location(path)
    base = os.environ.get("WRITEOFFS_REPORTS_URL")
    if base:
        root = location(reports_dir()).rstrip("/") + "/"
        if where.startswith(root):
            return f"{base.rstrip('/')}/{where[len(root) :]}"
    return Path(where).resolve().as_uri() if is_local(path) else where


def hitl_users(names: Sequence[str]) -> list[dict[str, str]]:
    # Tier approvers are Airflow usernames; SimpleAuthManager (and Keycloak with username ids) use the username
    # as user id, which is what Airflow compares ``assigned_users`` against.
    return [{"id": n, "name": n} for n in names]


def exclusion_param() -> Param:
    """The "Exclude invoices" field: a list of invoice refs, or a string of them (answers through the REST API, refs
    beyond the pick list). Either way the ledger checks every ref. :func:`offer_exclusions` adds the pick list."""
    return Param(
        None,
        type=["array", "string", "null"],
        title="Exclude invoices",
        description="Pick the invoices to leave out of this write-off (optional; largest first).",
        source="task",
    )


def offer_exclusions(param: Param, choices: dict[str, str]) -> None:
    """Turn the field into a pick list of this batch's items (ref -> label), built when the request is made: the
    Airflow form shows a JSON-schema ``array`` with ``examples`` as a multi-select with the labels."""
    param.schema["examples"] = list(choices)
    param.schema["values_display"] = dict(choices)


def approval_params() -> dict[str, Param]:
    return {
        EXCLUDE_PARAM: exclusion_param(),
        # Optional (null allowed): a non-nullable string is a required field in the Airflow form, and an empty
        # required field disables the answer buttons.
        COMMENT_PARAM: Param(
            None,
            type=["null", "string"],
            title="Internal comment",
            description="Stored with the decision in the ledger and audit log; never shown to customers.",
            source="task",
        ),
    }


def confirm_params() -> dict[str, Param]:
    return {COMMENT_PARAM: approval_params()[COMMENT_PARAM]}
