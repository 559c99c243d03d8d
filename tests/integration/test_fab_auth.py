"""The production auth manager on a real Airflow: FAB users (numeric ids), approval requests that name usernames.

Airflow's HITL check compares ``assigned_users`` with the user's *id*; under FAB that is ``ab_user``'s numeric key,
so the stock ``FabAuthManager`` refuses every approver our requests name ("not a respondent").
``writeoffs_airflow.fab_auth.WriteoffsFabAuthManager`` compares the FAB username instead; the ledger records the
username of whoever answered. Here: api-server, scheduler and dag-processor under that auth manager, users created in
FAB's tables with passwords, tokens from FAB's ``/auth/token``; the AR manager approves, the controller confirms
(four eyes), an outsider is refused, and the ledger names the usernames.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from scripts.airflow_local import start_airflow
from tests.factories import entity
from tests.integration.approval_support import AS_OF, answer, make_batch, pending_requests, write_policy
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import approvals, writeoff_batches

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_approval"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def test_fab_approvers_are_matched_by_username_and_recorded_by_username(
    tmp_path, pg_admin, ledger_templates, airflow_metadata_template
) -> None:
    schema = f"wt_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)
    url = schema_url(PG_URL, schema)
    ledger = make_engine(url)
    with ledger.begin() as conn:
        entity(conn)
        batch_id, _ = make_batch(conn, ["1200.00", "800.50"], tier="ar_manager", prepared_by="preparer", prefix="fab")
    server = start_airflow(
        metadata_template=airflow_metadata_template,
        dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
        env={
            "WRITEOFFS_LEDGER_URL": url,
            "WRITEOFFS_POLICY_PATH": str(write_policy(tmp_path / "policy.yaml")),
            "WRITEOFFS_DATA_DIR": str(tmp_path / "data"),
        },
        auth="fab",
    )
    try:
        run_id = f"fab_{uuid.uuid4().hex[:8]}"
        server.trigger(DAG_ID, run_id, {"as_of": AS_OF.isoformat()}, user="preparer")

        def request(step: str) -> dict:
            def find():
                with server.client("admin") as c:
                    for d in pending_requests(c, DAG_ID, run_id):
                        if f"batch {batch_id}:" in d["subject"] and d["task_instance"]["task_id"].endswith(step):
                            return d
                return None

            return server.wait_for(find, timeout=180, what=f"the {step} request")

        req = request("approve")
        assert {u["id"] for u in req["assigned_users"]} == {"ar_manager", "controller"}
        with server.client("outsider") as c:
            refused = answer(c, req, "Reject", {"exclude_invoice_refs": "", "comment": ""})
        assert refused.status_code == 403 and "The approve answer by outsider was not recorded" in refused.text
        with server.client("ar_manager") as c:
            r = answer(c, req, "Approve", {"exclude_invoice_refs": "", "comment": "FAB"})
        # The stock FabAuthManager answers 403 "not a respondent" here: the AR manager's id is a number.
        assert r.status_code == 200, r.text
        responder = r.json()["responded_by"]
        assert responder["name"] == "ar_manager" and responder["id"].isdigit(), responder
        conf = request("confirm")
        assert {u["id"] for u in conf["assigned_users"]} == {"controller"}  # four eyes: not the approver
        with server.client("controller") as c:
            assert answer(c, conf, "Confirm", {"comment": ""}).status_code == 200

        def posted() -> bool:
            with ledger.connect() as conn:
                st = conn.execute(select(writeoff_batches.c.status).where(writeoff_batches.c.id == batch_id)).scalar()
            return st == "posted"

        server.wait_for(posted, timeout=180, what="the batch to be posted")
        with ledger.connect() as conn:
            rows = conn.execute(select(approvals.c.step, approvals.c.approver).where(approvals.c.batch_id == batch_id))
            who = {r.step: r.approver for r in rows}
        assert who == {"approve": "ar_manager", "confirm": "controller"}
    finally:
        server.stop()
        ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
