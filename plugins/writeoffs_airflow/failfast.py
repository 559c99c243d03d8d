"""The one rule for retries: an error that cannot fix itself fails the task at once; anything else is retried.

Apply it under ``@task`` to every task of the project's DAGs::

    @task(retries=2)
    @fail_fast
    def stage(source: str, as_of: str) -> dict: ...

A named domain error that ``writeoffs.errors.is_permanent`` calls permanent (bad config, refused data, a policy,
approval or ledger error) becomes Airflow's ``AirflowFailException`` with the error's one-line message: the task
fails in this try, the failure alerts go out, and no retry repeats it. Transient errors (a database or source
that cannot be reached, an HTTP timeout, anything not named) propagate unchanged and keep the task's retries.
Cheap at DAG parse time: nothing is looked up until the task runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from writeoffs.errors import MESSAGE_LIMIT, is_permanent, shorten

F = TypeVar("F", bound=Callable[..., Any])

#: Set on wrapped callables so that a test can check every task of every DAG carries the rule.
MARKER = "__writeoffs_fail_fast__"


def fail_fast(fn: F) -> F:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_permanent(exc):
                raise
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {shorten(str(exc), MESSAGE_LIMIT)}") from exc

    setattr(run, MARKER, True)
    return run  # type: ignore[return-value]
