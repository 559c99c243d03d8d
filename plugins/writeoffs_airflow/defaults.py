"""``default_args`` shared by every DAG of the project: one owner, retries, and failure alerts everywhere; and the
one start date every DAG has (:data:`START_DATE`).

Cheap at parse time: building the notifiers looks nothing up (see ``writeoffs_airflow.alerts``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

from writeoffs_airflow.alerts import failure_callbacks

OWNER = "finance-data"

#: Every DAG's ``start_date`` (catchup is off everywhere, so it only bounds the first run).
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


#: How long one task may run before Airflow stops it (a hung database or HTTP call must not hold a worker slot and
#: the next day's run forever). The 1,000,000-invoice ingest takes minutes on a 2-core machine; a DAG whose task
#: may legitimately take longer passes its own. Human-in-the-loop tasks are bounded by their response timeout
#: instead (see writeoffs_airflow.hitl).
EXECUTION_TIMEOUT = timedelta(hours=1)


def default_args(
    *,
    retries: int = 1,
    retry_delay: timedelta = timedelta(minutes=5),
    execution_timeout: timedelta = EXECUTION_TIMEOUT,
    **extra: Any,
) -> dict[str, Any]:
    """The project's task defaults; a DAG overrides only what differs (e.g. a shorter retry delay)."""
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "execution_timeout": execution_timeout,
        "on_failure_callback": failure_callbacks(),
        **extra,
    }
