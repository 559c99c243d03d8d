"""
### Write-off reversal ("undo write-off")

Manually triggered; a controlled change in three steps:

1. `request` — the **requester is the authenticated user who triggered the run** (no param names a person). The
   ledger checks the reason against the fixed catalogue and computes who may approve: the approvers of the tier
   entitled to the write-off's amount under the policy version it was selected under, and of every higher tier,
   minus the requester (`writeoffs.reversal.plan_reversal`). Nobody left = refused.
2. `approve` — a Required Action (HITL) for those approvers: Approve reversal or Reject; 72 h to answer.
3. `reverse` — on approval, posts the mirror journal entry, linked to the original (`reverses_entry_id`), and
   reinstates the receivable. The ledger checks again that the responder is entitled and is not the requester.
   Nothing in the journal is edited or deleted; a second reversal is refused; a retry returns the first result.

**Params**: `invoice_ref` (+ `entity_code` if refs repeat across entities) **or** `writeoff_id`; `reason` (from
the catalogue); `note` (free text, optional); `posting_date` (YYYY-MM-DD, must fall in an open fiscal period;
default: the run's date).

Domain code: `include/writeoffs/reversal.py`; see docs/posting.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from writeoffs.catalogues import REVERSAL_REASONS  # plain data: the choices offered in the trigger form
from writeoffs_airflow.assets import POSTING
from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES
from writeoffs_airflow.reversal_hitl import ReversalApprovalOperator


@task
@fail_fast
def request(**context) -> dict:
    from writeoffs import audit
    from writeoffs.catalogues import REVERSAL_REASONS
    from writeoffs.reversal import plan_reversal
    from writeoffs_airflow.ledger import ledger_engine

    params, dag_run = context["params"], context["dag_run"]
    requester = (getattr(dag_run, "triggering_user_name", None) or "").strip()
    if not requester:
        raise ValueError("a reversal must be triggered by a signed-in user: this run has no triggering user")
    with ledger_engine().begin() as conn:
        plan = plan_reversal(
            conn,
            reason=params["reason"],
            requested_by=requester,
            writeoff_id=int(params["writeoff_id"]) if params.get("writeoff_id") else None,
            invoice_ref=params.get("invoice_ref") or None,
            entity_code=params.get("entity_code") or None,
        )
        audit.append(
            conn,
            actor=requester,
            action="reversal.requested",
            object_type="writeoff",
            object_id=plan.writeoff_id,
            details={**plan.summary(), "reason": params["reason"], "dag_run_id": dag_run.run_id},
        )
    return {
        **plan.summary(),
        "requested_by": requester,
        "reason": params["reason"],
        "reason_text": REVERSAL_REASONS[params["reason"]],
        "note": (params.get("note") or "")[:500],
    }


@task(outlets=[POSTING], pool=LEDGER_WRITES)
@fail_fast
def reverse(plan: dict, answer: dict | None, **context) -> dict:
    from datetime import date

    from airflow.sdk.exceptions import AirflowSkipException

    from writeoffs import audit
    from writeoffs.reversal import reverse_writeoff
    from writeoffs_airflow.ledger import ledger_engine

    dag_run = context["dag_run"]
    engine = ledger_engine()
    if not answer or answer.get("decision") != "approved":
        with engine.begin() as conn:
            audit.append(
                conn,
                actor=(answer or {}).get("responder") or "airflow:writeoff_reversal",
                action="reversal.rejected",
                object_type="writeoff",
                object_id=plan["writeoff_id"],
                details={"dag_run_id": dag_run.run_id, "requested_by": plan["requested_by"]},
            )
        raise AirflowSkipException(f"reversal of write-off {plan['writeoff_id']} rejected: nothing posted")
    # The posting date: the posting_date param, else the run's business date (one rule; never "now" in the task).
    from writeoffs_airflow.rundate import business_date

    raw = business_date(context, param="posting_date").isoformat()
    with engine.begin() as conn:
        result = reverse_writeoff(
            conn,
            writeoff_id=plan["writeoff_id"],
            reason=plan["reason"],
            note=plan.get("note") or None,
            requested_by=plan["requested_by"],
            approved_by=answer["responder"],
            posting_date=date.fromisoformat(raw),
            request_id=f"{dag_run.dag_id}:{dag_run.run_id}",
        )
    return result.summary()


@dag(
    dag_id="writeoff_reversal",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    # No dagrun_timeout: a run waits for people (bounded by each request's response timeout).
    default_args=default_args(retry_delay=timedelta(minutes=1)),
    tags=["writeoffs", "gl", "reversal"],
    doc_md=__doc__,
    params={
        "invoice_ref": Param(None, type=["null", "string"], title="Invoice reference"),
        "entity_code": Param(None, type=["null", "string"], title="Entity (when the invoice ref is ambiguous)"),
        "writeoff_id": Param(None, type=["null", "integer"], title="Write-off id (instead of the invoice ref)"),
        "reason": Param(
            "posted_in_error",
            type="string",
            enum=sorted(REVERSAL_REASONS),
            title="Why the write-off is undone",
            values_display=REVERSAL_REASONS,
        ),
        "note": Param("", type="string", maxLength=500, title="Note (optional, free text)"),
        "posting_date": Param(
            None, type=["null", "string"], format="date", title="Posting date of the reversal (open period)"
        ),
    },
)
def writeoff_reversal() -> None:
    plan = request()
    answer = ReversalApprovalOperator(task_id="approve", plan_task_id="request")
    plan >> answer
    reverse(plan, answer.output)


writeoff_reversal()
