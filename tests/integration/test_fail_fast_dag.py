"""Errors that cannot fix themselves fail a task in its first try; transient ones are retried (`dag.test()`).

The real ``ar_aging_ingest`` DAG with its own retry counts (``stage`` has 2 retries, the other tasks the project
default of 1); only the retry delay is set to zero so that a retry happens within the test.

- an unknown source name (a ConfigError in ``list_sources``) fails try 1;
- an export whose file is missing (an InputError in ``stage``) fails try 1 of the mapped ``stage``;
- a source database that cannot be reached (the SQL source on a path that does not exist) is retried: ``stage``
  fails only after its 3rd try.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-24"


@pytest.fixture
def ingest_dag(airflow_db, ledger_env, make_ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.dag_processing.dagbag import DagBag

    ledger_env(make_ledger("sqlite"))
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WRITEOFFS_SOURCES_DIR", str(tmp_path / "no" / "such" / "dir"))
    monkeypatch.delenv("WRITEOFFS_SOURCES_CONFIG", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "ar_aging_ingest.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["ar_aging_ingest"]
    for task in dag.tasks:
        task.retry_delay = timedelta(0)
    return dag


def _tries(dag_run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def test_a_config_error_fails_in_try_1(ingest_dag) -> None:
    assert ingest_dag.get_task("list_sources").retries >= 1  # retries configured, and not used
    run = ingest_dag.test(run_conf={"as_of": AS_OF, "sources": ["no_such_source"]})
    assert str(run.state) == "failed"
    assert _tries(run)["list_sources"] == ("failed", 1)


def test_bad_input_fails_in_try_1_and_an_unreachable_source_is_retried(ingest_dag) -> None:
    retries = ingest_dag.get_task("stage").retries
    assert retries >= 1
    missing = ingest_dag.test(run_conf={"as_of": AS_OF, "sources": ["erp_csv"]})  # no export in the directory
    assert _tries(missing)["stage"] == ("failed", 1)

    unreachable = ingest_dag.test(run_conf={"as_of": AS_OF, "sources": ["billing_db"]})  # sqlite file cannot open
    assert _tries(unreachable)["stage"] == ("failed", retries + 1)
