"""``default_args`` shared by every DAG of the project: one owner, retries, and failure alerts everywhere.

Cheap at parse time: building the notifiers looks nothing up (see ``writeoffs_airflow.alerts``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from writeoffs_airflow.alerts import failure_callbacks

OWNER = "finance-data"


def default_args(*, retries: int = 1, retry_delay: timedelta = timedelta(minutes=5), **extra: Any) -> dict[str, Any]:
    """The project's task defaults; a DAG overrides only what differs (e.g. a shorter retry delay)."""
    return {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": retry_delay,
        "on_failure_callback": failure_callbacks(),
        **extra,
    }
