"""No answer is ever lost: approvers who answer the instant a request opens, twenty batches in a row.

Airflow 3.3.2 can lose such an answer: when it reaches the API before the scheduler has seen the task park, the
scheduler retries the task and the retry re-opens the request, which clears the answer. The request tasks read an
answer left by an earlier try before re-opening (``writeoffs_airflow.hitl.answer_left_by_earlier_try``), so every
answer is recorded however early it came. Here a poller answers each request as soon as it exists (within
100 ms of its ``created_at`` where the machine allows, whatever state the task is in), approve and confirm, and
every batch must be posted with both decisions recorded by the person who answered.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from scripts.airflow_local import start_airflow
from tests.factories import entity
from tests.integration.approval_support import AS_OF, make_batch, write_policy
from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import upgrade
from writeoffs.db.schema import approvals, writeoff_batches

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_approval"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BATCHES = 20


def test_answers_given_the_instant_a_request_opens_are_never_lost(tmp_path, pg_admin) -> None:
    schema = f"we_{uuid.uuid4().hex[:12]}"
    with pg_admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    ledger = make_engine(url)
    server = None
    try:
        upgrade(ledger)
        with ledger.begin() as conn:
            entity(conn)
            # Below the AR manager tier's four-eyes amount: the approver confirms too.
            ids = [make_batch(conn, ["100.00", "25.50"], tier="ar_manager", prefix=f"e{n}")[0] for n in range(BATCHES)]
        server = start_airflow(
            dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
            env={
                "WRITEOFFS_LEDGER_URL": url,
                "WRITEOFFS_POLICY_PATH": str(write_policy(tmp_path / "policy.yaml")),
                "WRITEOFFS_DATA_DIR": str(tmp_path / "data"),
            },
        )
        run_id = f"early_{uuid.uuid4().hex[:8]}"
        server.trigger(DAG_ID, run_id, {"as_of": AS_OF.isoformat()}, user="preparer")
        client = server.client("ar_manager")
        answered: dict[tuple[str, int], float] = {}  # (task, map index) -> ms after the request was created
        deadline = time.monotonic() + 420
        while len(answered) < 2 * BATCHES and time.monotonic() < deadline:
            r = client.get(
                f"/dags/{DAG_ID}/dagRuns/{run_id}/hitlDetails", params={"response_received": False, "limit": 100}
            )
            r.raise_for_status()
            for d in r.json()["hitl_details"]:
                ti = d["task_instance"]
                key = (ti["task_id"], ti["map_index"])
                if key in answered:
                    continue
                option = "Confirm" if ti["task_id"].endswith("confirm") else "Approve"
                fields = {"comment": None} if option == "Confirm" else {"comment": None, "exclude_invoice_refs": None}
                created = datetime.fromisoformat(d["created_at"].replace("Z", "+00:00"))
                resp = client.patch(
                    f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails",
                    json={"chosen_options": [option], "params_input": fields},
                )
                if resp.status_code == 200:
                    answered[key] = (datetime.now(UTC) - created).total_seconds() * 1000
            time.sleep(0.02)
        assert len(answered) == 2 * BATCHES, f"only {len(answered)} of {2 * BATCHES} requests were answered in time"

        def all_posted() -> bool:
            with ledger.connect() as conn:
                done = conn.execute(
                    select(func.count()).where(writeoff_batches.c.id.in_(ids), writeoff_batches.c.status == "posted")
                ).scalar_one()
            return done == BATCHES

        server.wait_for(all_posted, timeout=300, what=f"all {BATCHES} batches posted")
        with ledger.connect() as conn:
            decisions = conn.execute(
                select(approvals.c.batch_id, approvals.c.step, approvals.c.approver, approvals.c.decision).where(
                    approvals.c.batch_id.in_(ids)
                )
            ).all()
        by_step = {(d.batch_id, d.step): d for d in decisions}
        for batch_id in ids:
            for step in ("approve", "confirm"):
                d = by_step.get((batch_id, step))
                assert d is not None, f"batch {batch_id}: the {step} answer was lost"
                assert d.approver == "ar_manager" and d.decision == "approved"
        latencies = sorted(answered.values())
        tis = server.client("admin").get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 500})
        tis.raise_for_status()
        retried = sum(1 for t in tis.json()["task_instances"] if t["try_number"] > 1 and "approve" in t["task_id"])
        retried += sum(1 for t in tis.json()["task_instances"] if t["try_number"] > 1 and "confirm" in t["task_id"])
        print(
            f"MEASURED early answers: {len(latencies)} answered, median {latencies[len(latencies) // 2]:.0f} ms, "
            f"max {latencies[-1]:.0f} ms after the request was created; {retried} request tasks were retried by "
            f"Airflow (answer before the park was seen) and their answers kept; all {BATCHES} batches posted"
        )
    finally:
        if server is not None:
            server.stop()
        ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
