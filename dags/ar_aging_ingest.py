"""
### AR aging ingest: sources → staging (with lineage) → sub-ledger merge → aging snapshot

Daily (cron in `WRITEOFFS_INGEST_SCHEDULE`, default 05:30 UTC), or manually with `as_of`.

1. `business_date` — the `as_of` param, else the end of the data interval (never "now").
2. `list_sources` — source names from `include/config/sources.yaml` (or the `sources` param).
3. `stage` — **one mapped task per source** (`.expand()`): read (file / SQL / HTTP), validate, COPY into staging,
   quarantine bad rows (or reject the batch, per source `on_bad_rows`). Idempotent per (source, as-of): a re-run
   replaces the batch. Returns a JSON summary with the `batch_id`.
4. `validate` — Great Expectations suites on the staged batches (docs/validation.md): a failed **blocking**
   check fails the task (no retry: bad data does not improve) so nothing is merged and an alert goes out;
   **warning** checks quarantine exactly the offending rows with the check's name, and the run goes on.
5. `merge` — upserts customers, invoices, holds, payments, activities set-wise; posts one AR sync journal entry
   per entity and currency so the GL AR control account keeps tying to the sub-ledger.
6. `recoveries` — books the cash that arrived for written-off invoices ('recovery' allocations of the merge) as
   recovery income, capped at what is still written off; the excess is reported (docs/posting.md, Recoveries).
7. `aging` — recomputes the aging snapshot of the business date, then builds the sub-ledger checkpoint of the last
   month end if it is missing (docs/subledger.md, Checkpoints).
8. `validate_aging` — bucket consistency and the tie-out of the aging total to the GL AR control account per
   entity and currency; only when it passes is the **ar_aging_snapshot** asset updated, which
   `writeoff_candidates` is scheduled on (so a break blocks candidate selection).

A run that has not succeeded within `WRITEOFFS_INGEST_DEADLINE_SECONDS` (default two hours) of being queued sends a
deadline alert through the failure channels (writeoffs_airflow.deadlines).

See docs/ingestion.md for onboarding a source.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, dag, task

from writeoffs_airflow.assets import AGING
from writeoffs_airflow.deadlines import ingest_deadline
from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES

# An empty value makes the DAG manual-only (the demo triggers it itself).
SCHEDULE = os.environ.get("WRITEOFFS_INGEST_SCHEDULE", "30 5 * * *") or None


@task
@fail_fast
def business_date(**context) -> str:
    """``as_of`` param, else the data interval's end date (one rule: writeoffs_airflow.rundate)."""
    from writeoffs_airflow.rundate import business_date as resolved

    return resolved(context).isoformat()


@task
@fail_fast
def list_sources(**context) -> list[str]:
    from writeoffs.ingest import config as source_config

    cfg = source_config.load()
    wanted = (context.get("params") or {}).get("sources") or list(cfg.sources)
    for name in wanted:
        cfg.source(name)  # fails the run early, naming an unknown source
    return list(wanted)


@task(retries=2, retry_delay=timedelta(minutes=2), max_active_tis_per_dag=4)
@fail_fast
def stage(source: str, as_of: str) -> dict:
    from datetime import date

    from writeoffs.ingest import config as source_config
    from writeoffs.ingest.staging import stage as stage_source
    from writeoffs_airflow.ledger import ledger_engine
    from writeoffs_airflow.sources import source_for

    cfg = source_config.load()
    return stage_source(ledger_engine(), cfg, source_for(cfg.source(source)), date.fromisoformat(as_of))


@task(retries=0)  # a blocked batch does not get better on retry
@fail_fast
def validate(summaries: list[dict], as_of: str, **context) -> list[dict]:
    from datetime import date

    from writeoffs.validation.run import validate_batches
    from writeoffs_airflow.ledger import ledger_engine
    from writeoffs_airflow.storage import docs_store

    summaries = list(summaries)
    validate_batches(
        ledger_engine(),
        [int(s["batch_id"]) for s in summaries],
        as_of=date.fromisoformat(as_of),
        run_key=context["run_id"],
        reports=docs_store(),
    )  # ValidationBlocked is permanent: fail_fast fails the task at once
    return summaries


@task(pool=LEDGER_WRITES)
@fail_fast
def merge(summaries: list[dict], as_of: str) -> dict:
    from datetime import date

    from writeoffs.ingest import config as source_config
    from writeoffs.ingest.merge import merge as merge_batches
    from writeoffs_airflow.ledger import ledger_engine

    batch_ids = [int(s["batch_id"]) for s in summaries]
    return merge_batches(ledger_engine(), source_config.load(), batch_ids, date.fromisoformat(as_of))


@task(pool=LEDGER_WRITES)
@fail_fast
def recoveries(as_of: str, merged: dict) -> dict:
    from datetime import date

    from writeoffs.recoveries_pending import book_pending_recoveries
    from writeoffs_airflow.ledger import ledger_engine

    return book_pending_recoveries(ledger_engine(), date.fromisoformat(as_of), actor="ingest")


@task(pool=LEDGER_WRITES)
@fail_fast
def aging(as_of: str, merged: dict) -> dict:
    from datetime import date

    from writeoffs.ingest import config as source_config
    from writeoffs.ingest.pipeline import age
    from writeoffs_airflow.ledger import ledger_engine

    return age(ledger_engine(), source_config.load(), date.fromisoformat(as_of))


@task(retries=0, outlets=[AGING])
@fail_fast
def validate_aging(as_of: str, aged: dict, **context) -> dict:
    from datetime import date

    from writeoffs.validation.run import validate_aging as check_aging
    from writeoffs_airflow.ledger import ledger_engine
    from writeoffs_airflow.storage import docs_store

    check_aging(ledger_engine(), as_of=date.fromisoformat(as_of), run_key=context["run_id"], reports=docs_store())
    # Downstream DAGs read the business date from the asset event instead of guessing it.
    context["outlet_events"][AGING].extra = {"as_of": as_of, "invoices": aged["invoices"]}
    return aged


@dag(
    dag_id="ar_aging_ingest",
    schedule=SCHEDULE,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=4),
    deadline=ingest_deadline(),  # alert when a run has not succeeded in time (WRITEOFFS_INGEST_DEADLINE_SECONDS)
    default_args=default_args(),
    tags=["writeoffs", "ingest", "aging"],
    doc_md=__doc__,
    params={
        "as_of": Param(
            None, type=["null", "string"], format="date", description="business date (default: data interval end)"
        ),
        "sources": Param(None, type=["null", "array"], description="source names to ingest (default: all configured)"),
    },
)
def ar_aging_ingest() -> None:
    as_of = business_date()
    staged = stage.partial(as_of=as_of).expand(source=list_sources())
    merged = merge(validate(staged, as_of), as_of)
    aged = aging(as_of, merged)
    recoveries(as_of, merged) >> aged
    validate_aging(as_of, aged)


ar_aging_ingest()
