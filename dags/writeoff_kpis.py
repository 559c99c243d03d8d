"""### writeoff_kpis

Month-end: books the Allowance for Doubtful Accounts of allowance-method entities, then reports the write-off KPIs
of the month.

**Runs** on the 1st of every month at 07:00 UTC for the month just ended (catchup off), or manually with params.

**Tasks**
1. `resolve_period`: the month and its end date from the params, else the run date (the month before it).
2. `allowance_estimate`: for every entity with `writeoff_method = allowance`: estimate per aging bucket from the
   aging snapshot of the month end and the loss rates of `include/config/allowance.yaml`, store the rows in
   `allowance_estimates` and post ONE adjustment per entity and currency (`Dr Bad Debt Expense / Cr Allowance`, or
   the reverse). Idempotent: a re-run of the same month end posts nothing. Skipped when no entity uses the
   allowance method. Fails clearly when the period is closed or the month end has no aging snapshot.
3. `kpi_report`: write-off amount, rate (% of sales, % of AR, classified), recovery rate, trend vs the previous
   month, breakdowns by segment, reason, approver, source system and aging bucket. Writes
   `$WRITEOFFS_DATA_DIR/reports/kpi/<YYYY-MM>.md`, `.json` and `<YYYY-MM>-tax-listing.csv`, and the charts (trend,
   rates against the bands, aging buckets, by reason) as `<YYYY-MM>-<chart>.svg` and `.png` beside them (served by
   the workspace at `/writeoffs/reports`).

**Params**: `as_of` (month-end date, YYYY-MM-DD) or `period` (YYYY-MM); `as_of` wins. See docs/kpi.md.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from writeoffs_airflow.defaults import default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES

#: 07:00 UTC on the 1st: after the month-end aging (ar_aging_ingest runs daily at 05:30 UTC).
MONTHLY = CronTriggerTimetable("0 7 1 * *", timezone="UTC")


@dag(
    dag_id="writeoff_kpis",
    schedule=MONTHLY,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=default_args(),
    params={
        "as_of": Param(None, type=["null", "string"], format="date", description="Month-end date (YYYY-MM-DD)"),
        "period": Param(
            None, type=["null", "string"], pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="Month (YYYY-MM)"
        ),
    },
    tags=["writeoffs", "kpi", "allowance", "ledger"],
    doc_md=__doc__,
)
def writeoff_kpis() -> None:
    @task
    @fail_fast
    def resolve_period() -> dict:
        import calendar
        from datetime import date

        from writeoffs_airflow.rundate import business_date

        context = get_current_context()
        params = context["params"]
        if params.get("as_of"):
            as_of = date.fromisoformat(str(params["as_of"])[:10])
        elif params.get("period"):
            y, m = (int(x) for x in str(params["period"]).split("-"))
            as_of = date(y, m, calendar.monthrange(y, m)[1])
        else:
            run_day = business_date({**context, "params": {}})
            as_of = run_day.replace(day=1) - timedelta(days=1)  # the month that just ended
        start = as_of.replace(day=1)
        end = as_of.replace(day=calendar.monthrange(as_of.year, as_of.month)[1])
        return {"as_of": as_of.isoformat(), "from": start.isoformat(), "to": end.isoformat()}

    @task(pool=LEDGER_WRITES)
    @fail_fast
    def allowance_estimate(period: dict) -> dict:
        from datetime import date

        from writeoffs.allowance import has_allowance_entities, load_config, run_allowance
        from writeoffs_airflow.ledger import ledger_engine

        engine = ledger_engine()
        with engine.connect() as conn:
            if not has_allowance_entities(conn):
                return {"as_of": period["as_of"], "skipped": "no entity uses the allowance method"}
        ti = get_current_context()["ti"]
        result = run_allowance(
            engine, date.fromisoformat(period["as_of"]), config=load_config(), actor=f"{ti.dag_id}:{ti.run_id}"[:64]
        )
        return result.summary()

    @task
    @fail_fast
    def kpi_report(period: dict, allowance: dict) -> dict:
        from datetime import date

        from writeoffs.kpi import headline, run_kpis
        from writeoffs.kpi_charts import write_report_charts
        from writeoffs_airflow.ledger import ledger_engine

        engine = ledger_engine()
        report, files = run_kpis(
            engine, date.fromisoformat(period["from"]), date.fromisoformat(period["to"]), previous=True
        )
        # The charts (trend, rates against the bands, aging buckets, by reason) as SVG and PNG beside the report.
        charts = write_report_charts(engine, report, files.markdown.parent)
        return {
            "headline": headline(report),
            "files": files.summary(),
            "charts": [str(p) for p in charts],
            "allowance_entries": allowance.get("entries_posted", 0),
        }

    period = resolve_period()
    kpi_report(period, allowance_estimate(period))


writeoff_kpis()
