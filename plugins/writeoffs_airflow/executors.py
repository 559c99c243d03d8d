"""The LocalExecutor, made safe for Required Actions answered the instant they open.

Airflow 3.3.2 loses such an answer (docs/approvals.md, "an answer given the instant a request opens"):

1. the worker parks the task (``AWAITING_INPUT``) and its process ends; the executor's *success* result of that
   process waits in the result queue until the next heartbeat;
2. the answer moves the task to ``SCHEDULED`` and the scheduler queues it again under the same key (same try
   number): the LocalExecutor hands it to a worker and forgets it (no ``running`` entry for tasks);
3. the scheduler then reads the park's stale *success* event, finds the task ``QUEUED``/``RUNNING`` with that try
   number and ``executor.has_task()`` false, and treats it as killed externally: the task goes up for retry and
   the retry's new request archives the answered one.

``ParkAwareLocalExecutor`` counts, per task key, the launches handed to workers and the results read back. While a
launch of a key is still outstanding, ``has_task`` says so — which is the truth — and the scheduler then reads
the stale event as "requeued" (its own exception for this case), not as a killed task. A task that really dies
still produces its one result for its one launch, so it is handled exactly as before.

Use it with ``AIRFLOW__CORE__EXECUTOR=writeoffs_airflow.executors.ParkAwareLocalExecutor`` (the local launcher,
``make up`` and the demo do). The CeleryExecutor is not affected: it tracks the newest launch per key and never
reports the older one's result. ``tests/integration/test_early_answer.py`` answers twenty requests within
milliseconds of opening, with this executor and (the attack) with the stock one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from airflow.executors.local_executor import LocalExecutor
from airflow.executors.workloads.task import ExecuteTask

#: The executor setting that selects it (``[core] executor``).
EXECUTOR = f"{__name__}.ParkAwareLocalExecutor"


class ParkAwareLocalExecutor(LocalExecutor):
    """LocalExecutor whose ``has_task`` stays true while a launch of the task key has not reported back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outstanding: Counter = Counter()

    def _process_workloads(self, workload_list: Any) -> None:
        for workload in workload_list:
            if isinstance(workload, ExecuteTask):  # callbacks and connection tests have keys of their own
                self._outstanding[workload.key] += 1
        super()._process_workloads(workload_list)

    def change_state(self, key: Any, state: Any, info: Any = None, remove_running: bool = True) -> None:
        # One result per launch: the launch it reports on is no longer outstanding.
        if self._outstanding.get(key, 0) > 0:
            self._outstanding[key] -= 1
            if not self._outstanding[key]:
                del self._outstanding[key]
        super().change_state(key, state, info, remove_running)

    def has_task(self, task_instance: Any) -> bool:
        return super().has_task(task_instance) or self._outstanding.get(task_instance.key, 0) > 0
