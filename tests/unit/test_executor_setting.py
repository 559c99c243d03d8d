"""Every local launcher runs the park-aware LocalExecutor (the answer-loss fix), named in one place."""

from __future__ import annotations

from pathlib import Path

from airflow.executors.executor_loader import ExecutorLoader
from airflow.executors.executor_utils import ExecutorName
from airflow.executors.local_executor import LocalExecutor

from writeoffs_airflow.executors import EXECUTOR, ParkAwareLocalExecutor

ROOT = Path(__file__).resolve().parents[2]


def test_the_setting_names_the_class_and_airflow_can_load_it() -> None:
    assert EXECUTOR == "writeoffs_airflow.executors.ParkAwareLocalExecutor"
    loaded, _ = ExecutorLoader.import_executor_cls(ExecutorName(module_path=EXECUTOR))
    assert loaded is ParkAwareLocalExecutor
    assert issubclass(loaded, LocalExecutor)
    assert loaded.is_local  # `airflow standalone` (make up) keeps it instead of forcing the stock LocalExecutor


def test_make_up_and_the_compose_one_host_layout_use_it() -> None:
    assert f"export AIRFLOW__CORE__EXECUTOR={EXECUTOR}\n" in (ROOT / "scripts" / "up.sh").read_text()
    assert f"AIRFLOW_EXECUTOR={EXECUTOR} docker compose" in (ROOT / "docker-compose.yaml").read_text()
    assert f"AIRFLOW_EXECUTOR={EXECUTOR} docker compose" in (ROOT / "docs" / "deploy.md").read_text()
