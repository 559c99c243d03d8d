"""### ledger_reconciliation

Proves, the same day, that the books agree: sub-ledger open AR = GL AR control per entity and currency; every
approved write-off is posted (with its journal entry) or skipped with a reason; every journal entry balances; each
written-off invoice has exactly one active write-off entry; recoveries never exceed what was written off; the
allowance account is explained by its entries.

**Runs** after every posting (asset `writeoff_postings`) and daily at 18:30 UTC, whichever comes first.

**Tasks**
1. `run_checks`: runs the check registry (`writeoffs.reconcile.CHECKS`) on one database snapshot, stores the run and
   its breaks in `recon_runs` / `recon_breaks`, writes
   `reconciliation/<as_of>-<run>.md` in the reports store (`WRITEOFFS_REPORTS_STORE`, default
   `$WRITEOFFS_DATA_DIR/reports`; docs/deploy.md), returns a summary.
2. `assert_no_breaks`: fails (red, no retry) when there is any break; the failure callbacks send the summary and a
   link to the log to Slack (`writeoffs_slack`) and e-mail (`writeoffs_smtp`).

**Params**: `as_of` (business date, default: the asset event's `as_of`, else the run date), `tolerance`
(`USD=0.001`: may only tighten the configured `WRITEOFFS_RECON_TOLERANCE`, default exact; a wider one fails the
run). Re-running a DAG run replaces its stored breaks (idempotent per run). See docs/reconciliation.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from writeoffs_airflow.assets import POSTING
from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES

#: Daily at 18:30 UTC: late enough for the day's postings, early enough for controllers to act the same day.
DAILY = CronTriggerTimetable("30 18 * * *", timezone="UTC")


@dag(
    dag_id="ledger_reconciliation",
    schedule=AssetOrTimeSchedule(timetable=DAILY, assets=POSTING),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=default_args(),
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Business date (YYYY-MM-DD)"),
        "tolerance": Param(
            "",
            type="string",
            description="Stricter per-currency tolerance for this run, e.g. USD=0.001 (never wider than configured)",
        ),
    },
    tags=["writeoffs", "reconciliation", "ledger"],
    doc_md=__doc__,
)
def ledger_reconciliation() -> None:
    @task(pool=LEDGER_WRITES)
    @fail_fast
    def run_checks() -> dict:
        from writeoffs.reconcile import Tolerances, reconcile
        from writeoffs_airflow.ledger import ledger_engine
        from writeoffs_airflow.rundate import business_date
        from writeoffs_airflow.storage import reports_root

        context = get_current_context()
        as_of = business_date(context)
        ti = context["ti"]
        result = reconcile(
            ledger_engine(),
            as_of,
            run_key=f"{ti.dag_id}:{ti.run_id}",
            reports=reports_root(),  # shared by every worker and the api-server (WRITEOFFS_REPORTS_STORE)
            # The param can only tighten the configured tolerances (a wider one is refused, the run fails).
            tolerance=Tolerances.configured().tightened_by(Tolerances.parse(context["params"].get("tolerance") or "")),
        )
        return result.summary()

    @task
    @fail_fast
    def assert_no_breaks(summary: dict) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        if summary["break_count"]:
            # Fail at once, no retry: a break is a fact about the books, re-reading them will not change it.
            raise AirflowFailException(summary["headline"])

    assert_no_breaks(run_checks())


ledger_reconciliation()
