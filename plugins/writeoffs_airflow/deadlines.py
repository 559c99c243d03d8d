"""Deadline alerts (Airflow 3.1+) of the daily cycle: "the day's run has not succeeded N after it was queued".

The daily ingest (``ar_aging_ingest``) carries one: when its run has not *succeeded* within the interval after it
was queued — still running, stuck in the ``ledger_writes`` pool, waiting for a retry, or failed (Airflow removes a
run's deadlines only when the run succeeds) — :func:`writeoffs_airflow.alerts.deadline_missed` sends a
:class:`~writeoffs_airflow.alerts.DeadlineMissed` message through the project's Slack and e-mail notifiers.

How Airflow runs it: the scheduler creates the deadline with the run, notices it has passed in its loop and hands
the callback (a ``SyncCallback``) to the default executor, which runs it like a task (LocalExecutor and
CeleryExecutor support it; no triggerer is needed). An executor without callback support (``supports_callbacks``
False) makes Airflow 3.3.2's scheduler loop raise on the missed deadline: turn the alert off there (``0`` below).
The reference is the run's ``queued_at`` (manual and asset-triggered runs in Airflow 3 have no logical date, and a
logical-date deadline would be skipped for them).

The interval is ``WRITEOFFS_INGEST_DEADLINE_SECONDS`` (default 7200: the 1,000,000-invoice ingest takes about two
minutes on two cores, so two hours leaves room for retries and a queue); ``0`` turns the alert off. Read when the
DAG file is parsed, like the schedule; a value that is not a whole number of seconds fails the DAG import (shown
in the UI) instead of silently dropping the alert. A missed scheduled run (scheduler down) is not covered: no run,
no deadline — monitor the scheduler's health for that.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

from writeoffs_airflow.alerts import deadline_missed

INGEST_DEADLINE_ENV = "WRITEOFFS_INGEST_DEADLINE_SECONDS"
INGEST_DEADLINE_DEFAULT = timedelta(hours=2)


def interval_from_env(name: str, default: timedelta) -> timedelta | None:
    """``default`` when the variable is unset or empty, None for ``0`` (alert off), else that many seconds;
    anything else is refused (ValueError naming the variable)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):  # digits only: no sign, no fraction, no unit
        raise ValueError(f"{name}={raw!r}: expected a whole number of seconds (0 turns the deadline alert off)")
    seconds = int(raw)
    return timedelta(seconds=seconds) if seconds else None


def run_deadline(interval: timedelta | None, name: str) -> list[DeadlineAlert]:
    """The deadline alert of a run ``interval`` after it was queued, alerting through the project's notifiers
    (an empty list when ``interval`` is None). Constructs objects only: safe at parse time."""
    if interval is None:
        return []
    return [
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=interval,
            callback=SyncCallback(deadline_missed),
            name=name,
        )
    ]


def ingest_deadline() -> list[DeadlineAlert]:
    """The daily ingest's deadline alert (``WRITEOFFS_INGEST_DEADLINE_SECONDS``, default two hours)."""
    return run_deadline(interval_from_env(INGEST_DEADLINE_ENV, INGEST_DEADLINE_DEFAULT), "daily ingest not done")
