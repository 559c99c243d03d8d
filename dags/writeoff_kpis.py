"""### writeoff_kpis

Month-end: books the Allowance for Doubtful Accounts of allowance-method entities, then reports the write-off KPIs
of the month.

**Runs** on the 1st of every month at 07:00 UTC for the month just ended (Airflow catchup off), or manually with
params. Everything is computed from the sub-ledger's movements as of the month end (`writeoffs.subledger`), so no
aging snapshot of that day is needed (a month end without an ingest is the normal case), and a **scheduled run
catches up missed months**: every month after the latest report on disk (up to 12) is reported too, oldest first.

**Tasks**
1. `resolve_period`: the month and its end date from the params, else the run date (the month before it); for a
   scheduled run, the missed months before it (`writeoffs.kpi.months_to_report`).
2. `allowance_estimate`: for every entity with `writeoff_method = allowance`, for each month in order: estimate per
   aging bucket from the sub-ledger as of the month end and the loss rates of `include/config/allowance.yaml`,
   store the rows in `allowance_estimates` and post ONE adjustment per entity and currency (`Dr Bad Debt Expense /
   Cr Allowance`, or the reverse). Idempotent: a re-run of the same month end posts nothing. Skipped when no entity
   uses the allowance method. Fails clearly when the period is closed.
3. `kpi_report`: for each month: write-off amount, rate (% of sales, % of AR, classified), recovery rate, trend vs
   the previous month, breakdowns by segment, reason, approver, source system and aging bucket. Writes
   `kpi/<YYYY-MM>.md`, `.json` and `<YYYY-MM>-tax-listing.csv` in the reports store (`WRITEOFFS_REPORTS_STORE`,
   default `$WRITEOFFS_DATA_DIR/reports`; docs/deploy.md), and the charts (trend, rates against the bands, aging
   buckets, by reason) as `<YYYY-MM>-<chart>.svg` and `.png` beside them (served by the workspace at
   `/writeoffs/reports`).

**Params**: `as_of` (month-end date, YYYY-MM-DD) or `period` (YYYY-MM); `as_of` wins. See docs/kpi.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from writeoffs_airflow.defaults import START_DATE, default_args
from writeoffs_airflow.failfast import fail_fast
from writeoffs_airflow.pools import LEDGER_WRITES

#: 07:00 UTC on the 1st: after the month-end aging (ar_aging_ingest runs daily at 05:30 UTC).
MONTHLY = CronTriggerTimetable("0 7 1 * *", timezone="UTC")


def _resolve_period(context) -> dict:
    """The month to report (params ``as_of`` / ``period``, else the month before the run's date) and, for a
    scheduled run, the missed months before it (``writeoffs.kpi.months_to_report``), oldest first."""
    import calendar
    from datetime import date

    from writeoffs_airflow.rundate import business_date

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
    target = {"as_of": as_of.isoformat(), "from": start.isoformat(), "to": end.isoformat()}
    if params.get("as_of") or params.get("period"):
        return {**target, "months": [target]}  # a manual run reports the month asked for
    from writeoffs.kpi import Period, months_to_report, reported_months
    from writeoffs_airflow.storage import reports_root

    months = months_to_report(Period.month(as_of.year, as_of.month), reported_months(reports=reports_root()))
    missed = [{"as_of": p.end.isoformat(), "from": p.start.isoformat(), "to": p.end.isoformat()} for p in months[:-1]]
    return {**target, "months": [*missed, target]}


@dag(
    dag_id="writeoff_kpis",
    schedule=MONTHLY,
    start_date=START_DATE,
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
        return _resolve_period(get_current_context())

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
        config = load_config()
        # Month by month, oldest first: estimates are booked in date order.
        results = [
            run_allowance(
                engine, date.fromisoformat(m["as_of"]), config=config, actor=f"{ti.dag_id}:{ti.run_id}"[:64]
            ).summary()
            for m in period["months"]
        ]
        return {**results[-1], "entries_posted": sum(r["entries_posted"] for r in results), "months": results}

    @task
    @fail_fast
    def kpi_report(period: dict, allowance: dict) -> dict:
        from datetime import date

        from writeoffs.kpi import headline, run_kpis
        from writeoffs.kpi_charts import write_report_charts
        from writeoffs.report_store import location
        from writeoffs_airflow.ledger import ledger_engine
        from writeoffs_airflow.storage import reports_root

        engine = ledger_engine()
        store = reports_root()  # shared by every worker and the api-server (WRITEOFFS_REPORTS_STORE)
        out = []
        for m in period["months"]:
            start, end = date.fromisoformat(m["from"]), date.fromisoformat(m["to"])
            report, files = run_kpis(engine, start, end, previous=True, reports=store)
            # The charts (trend, rates against the bands, aging buckets, by reason) as SVG and PNG beside the report.
            charts = write_report_charts(engine, report, files.markdown.parent)
            out.append(
                {"headline": headline(report), "files": files.summary(), "charts": [location(p) for p in charts]}
            )
        return {
            **out[-1],
            "months": [m["from"][:7] for m in period["months"]],
            "caught_up": [o["headline"] for o in out[:-1]],
            "allowance_entries": allowance.get("entries_posted", 0),
        }

    period = resolve_period()
    kpi_report(period, allowance_estimate(period))


writeoff_kpis()
