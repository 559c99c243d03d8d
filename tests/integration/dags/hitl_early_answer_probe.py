"""Test DAG: a chain of Required Actions, each answered by the test the instant it opens.

Used by ``tests/integration/test_early_answer.py`` to prove that an answer given within milliseconds of a request
opening is never lost (Airflow 3.3.2's scheduler race, worked around by ``writeoffs_airflow.executors``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, chain

N_REQUESTS = 20

with DAG(
    dag_id="hitl_early_answer_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["test"],
    default_args={"retries": 0},
    dagrun_timeout=timedelta(minutes=20),
):
    chain(
        *[
            HITLOperator(
                task_id=f"ask_{i:02d}",
                subject=f"Probe request {i}",
                options=["Yes", "No"],
                response_timeout=timedelta(minutes=5),
            )
            for i in range(N_REQUESTS)
        ]
    )
