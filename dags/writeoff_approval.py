"""
### Write-off approval: human decision in the Airflow UI, then posting

Runs when `writeoff_candidates` updates the **writeoff_candidates** asset (or manually with `as_of`).

1. `open_batches` claims every *proposed* batch up to the business date (status → `awaiting_approval`; a batch
   of a day whose run is still open or failed is claimed by the next run, never stranded) and maps
   one approval flow per batch (never per invoice). Small-balance batches of the `auto` tier are auto-approved
   under the policy's tolerance and posted without a human decision (audited).
2. Per batch (`batch` task group, mapped):
   - `approve` — Human-in-the-loop request to the batch tier's approvers (`assigned_users`): Markdown summary
     (count, total, by reason, by aging bucket, top items with evidence, link to the full CSV), params to
     exclude invoices and add an internal comment. Timeout: expire, or escalate to the next tier (policy).
   - `approve_escalated_1/2` — ask the next tier only if the batch was escalated; otherwise skipped without
     running (no worker slot): the step that decides the batch has them skipped.
   - `confirm` — shows exactly what will be posted after exclusions; Confirm or Reject.
   - `post` — posts the batch exactly once after re-checking the recorded approval (who, tier, limit, hash).
3. Every decision (who, when, decision, comment, exclusions, policy version, batch hash) is recorded by
   `writeoffs.approvals.record_decision` in the ledger's `approvals` table and the hash-chained audit log;
   refused answers (self-approval, wrong tier) are audited and the request stays open for the right people.

Answer in the UI (*Required actions*) or with `scripts/approve.py` (REST API); see docs/approvals.md.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from airflow.sdk import Param, dag, task, task_group

from writeoffs_airflow.assets import CANDIDATES, POSTING
from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.hitl import BatchApprovalOperator, BatchConfirmOperator
from writeoffs_airflow.pools import LEDGER_WRITES

#: Approval attempts after the first one, for batches that escalate on timeout (three default tiers: two steps up).
ESCALATION_STEPS = 2
#: Mapped task instances are named by batch in the UI ("batch 12", not "[5]"): rendered from the task's own
#: (already rendered) batch id, so the name is there while the request waits.
BATCH_LABEL = "batch {{ task.batch_id }}"


@task
@fail_fast
def business_date(**context) -> str:
    """The business date: the `as_of` param, else the triggering asset event's `as_of`, else the run's date."""
    from writeoffs_airflow.hitl import business_date_of

    return business_date_of(context)


@task
@fail_fast
def open_batches(as_of: str, **context) -> list[int]:
    from writeoffs.identity import run_actor
    from writeoffs.tiers import SYSTEM_ACTOR
    from writeoffs_airflow.hitl import claim_batches

    # Whoever triggered this run may answer none of the batches it routes (four eyes): recorded on each batch.
    return claim_batches(as_of, run_id=context["run_id"], routed_by=run_actor(context["dag_run"], SYSTEM_ACTOR))


@task(outlets=[POSTING], pool=LEDGER_WRITES)
@fail_fast
def post_auto_batches(as_of: str) -> list[dict[str, str]]:
    from writeoffs_airflow.hitl import post_auto

    return post_auto(as_of)


@task(outlets=[POSTING], pool=LEDGER_WRITES, map_index_template="{{ batch_label }}")
@fail_fast
def post(batch_id: int) -> dict[str, str]:
    from airflow.sdk import get_current_context

    from writeoffs_airflow.hitl import post_confirmed

    # A TaskFlow task's arguments are not in the template context: the label is set here (Airflow renders the
    # map index template after the task body).
    get_current_context()["batch_label"] = f"batch {int(batch_id)}"
    return post_confirmed(int(batch_id))


@task_group(group_id="batch")
def batch_flow(batch_id: int) -> None:
    approve = BatchApprovalOperator(task_id="approve", batch_id=batch_id, map_index_template=BATCH_LABEL)
    # A straight chain on purpose: each escalation attempt asks only if the previous step escalated the batch. A
    # step whose decision makes the later ones moot (approved: the escalation steps; rejected or expired: everything
    # after it) has them skipped at once through the execution API (BatchDecisionOperator.steps_that_no_longer_apply),
    # so they never take a worker slot; "none_failed" lets the chain continue past skipped steps. Every trigger rule
    # here must be one Airflow 3.3 expands per batch right away: with "none_failed_min_one_success" (or several
    # upstreams) inside a mapped task group, the downstream task is only expanded once *every* batch's upstream is
    # done, which would make one batch's confirmation wait for all other batches' approvals (and leave nothing to skip).
    chain = [approve]
    for n in range(1, ESCALATION_STEPS + 1):
        chain.append(
            BatchApprovalOperator(
                task_id=f"approve_escalated_{n}",
                batch_id=batch_id,
                final=n == ESCALATION_STEPS,
                trigger_rule="none_failed",
                map_index_template=BATCH_LABEL,
            )
        )
    chain.append(
        BatchConfirmOperator(
            task_id="confirm", batch_id=batch_id, trigger_rule="none_failed", map_index_template=BATCH_LABEL
        )
    )
    for upstream, downstream in itertools.pairwise(chain):
        upstream >> downstream
    chain[-1] >> post(batch_id)


@dag(
    dag_id="writeoff_approval",
    schedule=[CANDIDATES],
    start_date=START_DATE,
    catchup=False,
    # A run stays open until its batches are decided (days): later days' runs must start meanwhile. Runs never share
    # a batch (claim_batches) and posting serialises per batch in the ledger.
    max_active_runs=4,
    # No dagrun_timeout: a run waits for people (bounded by each request's response timeout).
    default_args=default_args(retry_delay=timedelta(minutes=2)),
    params={
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Business date (YYYY-MM-DD) whose proposed batches to route; default: from the trigger.",
        )
    },
    tags=["writeoffs", "approval", "hitl"],
    doc_md=__doc__,
)
def writeoff_approval() -> None:
    as_of = business_date()
    batches = open_batches(as_of)
    post_auto_batches(as_of)
    batch_flow.expand(batch_id=batches)


writeoff_approval()
