"""The validation gate in a real DAG run (`dag.test()`, the session's Airflow metadata DB, a PostgreSQL ledger).

A batch that fails a blocking expectation (here: the invoice count differs from the source's own control total)
fails `validate`, and nothing downstream runs: no merge, no aging, no asset event, so `writeoff_candidates` is
never triggered. The same export with a matching control file goes all the way through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from writeoffs.db.schema import invoices

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad_inputs"
AS_OF = "2026-11-24"


def _export(base: Path, control_rows: int) -> None:
    d = base / "erp_export"
    d.mkdir(parents=True, exist_ok=True)
    (d / "invoices.csv").write_bytes((CORPUS / "good_invoices.csv").read_bytes())
    (d / "payments.csv").write_text(
        '"Company","Payment No","Customer No","Payment Date","Currency","Amount","Invoice No","Applied Amount"\n'
    )
    (d / "activities.csv").write_text('"Company","Customer No","Invoice No","Activity","Date","End Date","Outcome"\n')
    (d / "control.json").write_text(json.dumps({"as_of": AS_OF, "invoices": {"rows": control_rows}}))


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_blocking_failure_stops_the_run_before_merge_and_a_clean_batch_passes(
    airflow_db: str, ledger_env, pg_ledger: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    ledger_env(pg_ledger)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WRITEOFFS_SOURCES_DIR", str(tmp_path / "sources"))
    # Airflow 3.3.2's dag.test() fails at the end of a successful run of a DAG with a deadline (DagRun.update_state
    # looks the DAG's DeadlineAlert objects up as if they were database ids): the deadline is off for dag.test()
    # runs (docs/deploy.md); tests/integration/test_deadline_alert_airflow.py tests it on a real scheduler.
    monkeypatch.setenv("WRITEOFFS_INGEST_DEADLINE_SECONDS", "0")
    bag = DagBag(dag_folder=str(ROOT / "dags" / "ar_aging_ingest.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["ar_aging_ingest"]
    conf = {"as_of": AS_OF, "sources": ["erp_csv"]}

    _export(tmp_path / "sources", control_rows=3)  # the file has 2 invoices: the source's own total disagrees
    blocked = dag.test(run_conf=conf)
    states = _states(blocked)
    assert str(blocked.state) == "failed"
    assert states["validate"] == "failed"
    assert states["merge"] == "upstream_failed" and states["validate_aging"] == "upstream_failed"
    with pg_ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 0
        run = conn.execute(
            text("SELECT blocking_failed FROM validation_runs WHERE suite = 'invoices' ORDER BY id DESC")
        ).first()
    assert run is not None and run.blocking_failed == 1

    _export(tmp_path / "sources", control_rows=2)
    passed = dag.test(run_conf=conf)
    assert str(passed.state) == "success", _states(passed)
    with pg_ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 2
