"""
### Write-off reversal ("undo write-off")

Manually triggered. Reverses ONE posted write-off: posts the mirror journal entry, linked to the original
(`reverses_entry_id`), and reinstates the receivable (open balance back, written-off amount down, invoice status
`reversed` = open again). Nothing in the journal is edited or deleted. A second reversal of the same write-off is
refused; a retry of this run returns the first result (the run id is the request id).

**Params**: `invoice_ref` (+ `entity_code` if refs repeat across entities) **or** `writeoff_id`; `reason`;
`requested_by`; `posting_date` (YYYY-MM-DD, must fall in an open fiscal period; default: the run's date).

Domain code: `include/writeoffs/reversal.py`; see docs/posting.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from writeoffs_airflow.assets import POSTING
from writeoffs_airflow.defaults import default_args


@task(outlets=[POSTING])
def reverse(**context) -> dict:
    from datetime import date

    from writeoffs.reversal import reverse_writeoff
    from writeoffs_airflow.ledger import ledger_engine

    params = context["params"]
    dag_run = context["dag_run"]
    # The business date comes from the params; else the run's own date (never "now" inside the task).
    raw = params.get("posting_date") or (dag_run.logical_date or dag_run.run_after).date().isoformat()
    with ledger_engine().begin() as conn:
        result = reverse_writeoff(
            conn,
            writeoff_id=int(params["writeoff_id"]) if params.get("writeoff_id") else None,
            invoice_ref=params.get("invoice_ref") or None,
            entity_code=params.get("entity_code") or None,
            reason=params["reason"],
            requested_by=params["requested_by"],
            posting_date=date.fromisoformat(raw),
            request_id=f"{dag_run.dag_id}:{dag_run.run_id}",
        )
    return result.summary()


@dag(
    dag_id="writeoff_reversal",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=timedelta(minutes=1)),
    tags=["writeoffs", "gl", "reversal"],
    doc_md=__doc__,
    params={
        "invoice_ref": Param(None, type=["null", "string"], title="Invoice reference"),
        "entity_code": Param(None, type=["null", "string"], title="Entity (when the invoice ref is ambiguous)"),
        "writeoff_id": Param(None, type=["null", "integer"], title="Write-off id (instead of the invoice ref)"),
        "reason": Param("", type="string", minLength=3, title="Why the write-off is undone"),
        "requested_by": Param("", type="string", minLength=1, title="Requested by (user name)"),
        "posting_date": Param(
            None, type=["null", "string"], format="date", title="Posting date of the reversal (open period)"
        ),
    },
)
def writeoff_reversal() -> None:
    reverse()


writeoff_reversal()
