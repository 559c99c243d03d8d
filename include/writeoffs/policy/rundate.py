"""The business (as-of) date of a run, from plain values so the rule is testable without Airflow.

Order: an explicit param; else the ``as_of`` an upstream asset event carries in its ``extra`` (the aging DAG
emits ``{"as_of": "YYYY-MM-DD"}``; the latest event wins); else the end of the data interval; else the run's
``run_after``. ``logical_date`` is not used: in Airflow 3 it is None for asset-triggered and manual runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from writeoffs.errors import ConfigError


def resolve_as_of(
    param: str | None,
    event_extras: Iterable[Mapping[str, object]] = (),
    data_interval_end: datetime | None = None,
    run_after: datetime | None = None,
) -> date:
    if param:
        try:
            return date.fromisoformat(str(param))
        except ValueError:
            raise ConfigError(f"param as_of {param!r} is not a date (YYYY-MM-DD)") from None
    dates = []
    for extra in event_extras:
        value = extra.get("as_of") if extra else None
        if value:
            try:
                dates.append(date.fromisoformat(str(value)))
            except ValueError:
                raise ConfigError(f"asset event extra as_of {value!r} is not a date (YYYY-MM-DD)") from None
    if dates:
        return max(dates)
    for moment in (data_interval_end, run_after):
        if moment is not None:
            return moment.date()
    raise ConfigError("no business date: pass the as_of param")
