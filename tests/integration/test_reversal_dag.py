"""The ``writeoff_reversal`` DAG with ``dag.test()``: real Airflow (own AIRFLOW_HOME), real PostgreSQL ledger.

A first run reverses the worked example's write-off; a second run for the same write-off fails (refused).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs.db.schema import invoices, journal_entries, writeoffs
from writeoffs.posting import post_batch

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RUNNER = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dr = bag.dags["writeoff_reversal"].test(run_conf=json.loads(sys.argv[2]))
print("RESULT " + json.dumps({"state": str(dr.state)}))
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("airflow_home_reversal")
    dags = home / "dags"
    dags.mkdir()
    (dags / "writeoff_reversal.py").symlink_to(ROOT / "dags" / "writeoff_reversal.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WRITEOFFS_"))} | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT)]),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    (home / "runner.py").write_text(RUNNER)
    yield env


def run(env: dict[str, str], engine: Engine, conf: dict) -> str:
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    run_env = env | {
        "AIRFLOW_CONN_WRITEOFF_LEDGER": json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": url}})
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(env["AIRFLOW_HOME"]) / "runner.py"),
            env["AIRFLOW__CORE__DAGS_FOLDER"],
            json.dumps(conf),
        ],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert result, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(result[-1][7:])["state"]


def test_reversal_dag_reverses_once(airflow_env: dict[str, str], pg_ledger: Engine) -> None:
    with pg_ledger.begin() as conn:
        ids = f.worked_example(conn)
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(pg_ledger, batch)
    post_batch(pg_ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    conf = {
        "invoice_ref": "INV-WORKED-45000",
        "reason": "posted in error",
        "requested_by": "controller",
        "posting_date": "2026-12-01",
    }

    assert run(airflow_env, pg_ledger, conf) == "success"
    assert run(airflow_env, pg_ledger, conf) == "failed"  # a second reversal is refused

    with pg_ledger.connect() as conn:
        assert conn.execute(select(invoices.c.open_balance, invoices.c.status)).one() == (Decimal("45000"), "reversed")
        assert conn.execute(select(writeoffs.c.status)).scalar_one() == "reversed"
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 2
