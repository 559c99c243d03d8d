"""
### Write-off candidates: charge-off, policy selection with evidence, approval batches

Runs when the aging snapshot asset **ar_aging_snapshot** is updated by the ingestion DAG, or manually with `as_of`.
**Assumption:** the upstream DAG updates the asset only after its Great Expectations validation gate passed, and
puts the business date in the event extra as `{"as_of": "YYYY-MM-DD"}`; this DAG does not re-validate.

1. `load_policy` validates `include/config/policy.yaml` (or `$WRITEOFFS_POLICY_PATH`; no run param can name
   another file — try drafts with `policy_whatif`), records it in
   `policy_versions` and activates it. An **invalid file is rejected** (field and reason in the log and the audit
   log, action `policy.rejected`) and the previously active policy stays in force.
2. `charge_off` declares invoices past the charge-off threshold `charged_off` (no journal entry; one set-wise
   UPDATE, one audit row).
3. `select_candidates` evaluates every open invoice in one SQL statement and writes candidates (rule, reason,
   evidence JSON, amount, tier) already attached to their batches: one per entity, currency and approval tier.
   Idempotent per (as-of, policy): a re-run finds the same batches and inserts nothing. Updates **writeoff_candidates**.
4. `summarise` logs the per-batch table (count, total, by reason).

Never one task per invoice: the work is set-wise in the ledger database.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from writeoffs_airflow.assets import AGING, CANDIDATES
from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES


@task
@fail_fast
def load_policy(**context) -> dict[str, str | None]:
    import logging

    from writeoffs.policy.service import resolve
    from writeoffs_airflow.ledger import ledger_engine
    from writeoffs_airflow.rundate import business_date

    as_of = business_date(context)
    # The configured policy file only: a run cannot choose another one (it would become the policy in force for
    # everyone). Drafts are tried with policy_whatif, which is read-only.
    res = resolve(ledger_engine(), None, actor=_actor(context))
    if res.rejected:
        logging.getLogger(__name__).error("policy file rejected, the active policy stays in force: %s", res.rejected)
    return {
        "as_of": as_of.isoformat(),
        "policy_hash": res.policy.content_hash,
        "policy_version": res.policy.version,
        "rejected": res.rejected,
    }


@task(pool=LEDGER_WRITES)
@fail_fast
def charge_off(run: dict[str, str | None], **context) -> dict:
    from datetime import date

    from writeoffs.policy.service import policy_by_hash, run_charge_off
    from writeoffs_airflow.ledger import ledger_engine

    engine = ledger_engine()
    policy = policy_by_hash(engine, str(run["policy_hash"]))
    return run_charge_off(engine, policy, date.fromisoformat(str(run["as_of"])), actor=_actor(context)).to_dict()


@task(outlets=[CANDIDATES], pool=LEDGER_WRITES)
@fail_fast
def select_candidates(run: dict[str, str | None], **context) -> dict:
    from datetime import date

    from writeoffs.policy.service import policy_by_hash, select_and_batch
    from writeoffs_airflow.ledger import ledger_engine

    engine = ledger_engine()
    policy = policy_by_hash(engine, str(run["policy_hash"]))
    as_of = date.fromisoformat(str(run["as_of"]))
    result = select_and_batch(
        engine, policy, as_of, prepared_by=_actor(context), dag_run_id=context["dag_run"].run_id
    ).to_dict()
    # Downstream (approval) reads the business date from the event rather than guessing it.
    context["outlet_events"][CANDIDATES].extra = {"as_of": as_of.isoformat(), "policy_hash": policy.content_hash}
    return result


@task
@fail_fast
def summarise(run: dict[str, str | None], selected: dict) -> list[dict]:
    import logging
    from datetime import date

    from writeoffs.policy.batching import render_batch_table
    from writeoffs.policy.service import summary
    from writeoffs_airflow.ledger import ledger_engine

    batches = summary(ledger_engine(), str(run["policy_hash"]), date.fromisoformat(str(run["as_of"])))
    logging.getLogger(__name__).info(
        "as of %s, policy %s: %s new candidates, %s skipped\n%s",
        run["as_of"],
        run["policy_version"],
        selected["inserted"],
        selected["skipped"],
        render_batch_table(batches),
    )
    return batches


def _actor(context) -> str:
    """Who prepared the batches: the authenticated user who triggered the run, else this DAG (scheduled or
    asset-triggered runs). Never a param: the preparer may not approve, so naming someone else would let the real
    preparer approve their own batch (segregation of duties)."""
    from writeoffs.identity import run_actor

    return run_actor(context["dag_run"], "airflow:writeoff_candidates")


@dag(
    dag_id="writeoff_candidates",
    schedule=[AGING],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=default_args(retries=2),
    tags=["writeoffs", "policy"],
    doc_md=__doc__,
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="business date (default: event)"),
    },
)
def writeoff_candidates() -> None:
    run = load_policy()
    co = charge_off(run)
    selected = select_candidates(run)
    co >> selected
    summarise(run, selected)


writeoff_candidates()
