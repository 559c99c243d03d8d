"""The business date of a run, read from an Airflow task context: one adapter over the one rule.

The rule (precedence and parsing) is :func:`writeoffs.policy.rundate.resolve_as_of`: the ``as_of`` param (a run's
conf lands in its params), else the latest ``as_of`` carried by a triggering asset event, else the end of the data
interval, else the run's ``run_after``. Never ``logical_date`` (None for manual and asset-triggered runs in
Airflow 3) and never "now" inside a task. Every DAG, the approval flow and the alerts call :func:`business_date`.
"""

from __future__ import annotations

from datetime import date
from typing import Any


def business_date(context: Any, *, param: str = "as_of") -> date:
    """The run's business date; ``param`` names the run param that overrides it (e.g. ``posting_date``).
    Refused (ConfigError, one line) if a given value is not a date."""
    from writeoffs.policy.rundate import resolve_as_of

    params = context.get("params") or {}
    events = context.get("triggering_asset_events") or {}
    extras = [
        ev.extra
        for asset_events in events.values()
        for ev in asset_events
        if isinstance(getattr(ev, "extra", None), dict)
    ]
    dag_run = context.get("dag_run")
    return resolve_as_of(
        params.get(param),
        extras,
        context.get("data_interval_end") or getattr(dag_run, "data_interval_end", None),
        getattr(dag_run, "run_after", None),
    )


def business_date_of_run(dag_run: Any, *, param: str = "as_of") -> date:
    """The business date of a run given as the REST API's DAG run (a mapping, datetimes as ISO text): what a
    deadline-alert callback receives instead of a task context. Same rule and precedence as :func:`business_date`
    (a run's conf carries the ``as_of`` param; no asset events are known there)."""
    from datetime import datetime

    from writeoffs.policy.rundate import resolve_as_of

    def moment(value: Any) -> datetime | None:
        if value is None or value == "" or isinstance(value, datetime):
            return value or None
        return datetime.fromisoformat(str(value))

    run = dict(dag_run or {})
    conf = run.get("conf") or {}
    return resolve_as_of(
        conf.get(param) if isinstance(conf, dict) else None,
        (),
        moment(run.get("data_interval_end")),
        moment(run.get("run_after")),
    )
