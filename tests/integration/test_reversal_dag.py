"""The ``writeoff_reversal`` DAG on a real Airflow (api-server + scheduler + dag-processor), through the REST API.

A reversal is a controlled change: the requester is the authenticated user who triggered the run (no param names a
person), the request goes as a Required Action to the approvers entitled to the amount minus the requester, and
the ledger checks the responder again before anything posts.

The attacks (from the review that found "anyone can reverse a write-off under the CFO's name"):
- a user with no finance role triggers a reversal: it is recorded under *their* name and cannot post until an
  entitled approver approves; they cannot answer their own request (Airflow 403);
- a controller requests the reversal of a write-off their own tier is entitled to: only the CFO is asked, the
  controller cannot answer; the CFO rejects and nothing is posted.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from scripts.airflow_local import AirflowServer, start_airflow
from tests import factories as f
from tests.integration.approval_support import answer, pending_requests
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import audit_log, invoices, journal_entries, writeoffs
from writeoffs.posting import post_batch

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_reversal"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Env:
    server: AirflowServer
    ledger: Engine


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_admin, ledger_templates, airflow_metadata_template) -> Iterator[Env]:
    e = Env()
    tmp = tmp_path_factory.mktemp("reversal")
    schema = f"wr_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)  # a clone of the session's migrated ledger
    url = schema_url(PG_URL, schema)
    e.ledger = make_engine(url)
    with e.ledger.begin() as conn:
        ids = f.worked_example(conn)
        other = f.invoice(conn, ids["customer_id"], ref="INV-B-45000", amount="45000.00", days_past_due=400)
        reason = "uncollectible_after_collections"
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", reason), (other, "45000.00", reason)])
    approve(e.ledger, batch)
    assert post_batch(e.ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF).posted == 2
    e.server = start_airflow(
        metadata_template=airflow_metadata_template,
        dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
        env={"WRITEOFFS_LEDGER_URL": url, "WRITEOFFS_DATA_DIR": str(tmp / "data")},
    )
    try:
        yield e
    finally:
        e.server.stop()
        e.ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def request_of(e: Env, run_id: str, timeout: float = 150) -> dict:
    def find():
        with e.server.client("admin") as c:
            for d in pending_requests(c, DAG_ID, run_id):
                return d
        return None

    return e.server.wait_for(find, timeout=timeout, what=f"reversal request of run {run_id}")


def writeoff_of(e: Env, ref: str):
    with e.ledger.connect() as conn:
        return conn.execute(
            select(writeoffs.c.id, writeoffs.c.status, invoices.c.open_balance)
            .select_from(writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id))
            .where(invoices.c.invoice_ref == ref)
        ).one()


def audit_of(e: Env, writeoff_id: int) -> list[tuple[str, str, dict]]:
    with e.ledger.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.details)
            .where(audit_log.c.object_type == "writeoff", audit_log.c.object_id == str(writeoff_id))
            .order_by(audit_log.c.id)
        ).all()
    return [(r.action, r.actor, json.loads(r.details)) for r in rows]


def test_an_outsider_can_only_ask_and_an_entitled_approver_decides(env: Env) -> None:
    run_id = f"outsider_{uuid.uuid4().hex[:6]}"
    env.server.trigger(
        DAG_ID, run_id, {"invoice_ref": "INV-WORKED-45000", "reason": "posted_in_error"}, user="outsider"
    )

    detail = request_of(env, run_id)
    assert sorted(u["name"] for u in detail["assigned_users"]) == ["cfo", "controller"]
    assert "requested by outsider" in detail["subject"]
    assert writeoff_of(env, "INV-WORKED-45000").status == "posted"  # nothing happens before the approval
    with env.server.client("outsider") as c:
        assert answer(c, detail, "Approve reversal").status_code == 403  # not their decision
    with env.server.client("controller") as c:
        r = answer(c, detail, "Approve reversal")
        assert r.status_code == 200, r.text

    assert env.server.wait_run(DAG_ID, run_id) == "success"
    wo = writeoff_of(env, "INV-WORKED-45000")
    assert (wo.status, wo.open_balance) == ("reversed", Decimal("45000"))
    trail = audit_of(env, wo.id)
    assert [(a, who) for a, who, _ in trail if a.startswith(("reversal", "writeoff.reversed"))] == [
        ("reversal.requested", "outsider"),
        ("writeoff.reversed", "controller"),
    ]
    done = trail[-1][2]
    assert (done["requested_by"], done["approved_by"], done["reason"]) == ("outsider", "controller", "posted_in_error")
    with env.ledger.connect() as conn:
        rev = conn.execute(select(journal_entries).where(journal_entries.c.reverses_entry_id.is_not(None))).one()
    assert rev.created_by == "outsider" and "approved by controller" in rev.description


def test_a_controller_cannot_approve_their_own_request_and_a_rejection_posts_nothing(env: Env) -> None:
    run_id = f"controller_{uuid.uuid4().hex[:6]}"
    env.server.trigger(DAG_ID, run_id, {"invoice_ref": "INV-B-45000", "reason": "duplicate"}, user="controller")

    detail = request_of(env, run_id)
    assert [u["name"] for u in detail["assigned_users"]] == ["cfo"]  # the requester is taken out
    with env.server.client("controller") as c:
        assert answer(c, detail, "Approve reversal").status_code == 403
    with env.server.client("cfo") as c:
        r = answer(c, detail, "Reject")
        assert r.status_code == 200, r.text

    env.server.wait_run(DAG_ID, run_id)
    wo = writeoff_of(env, "INV-B-45000")
    assert (wo.status, wo.open_balance) == ("posted", Decimal("0"))
    assert [(a, who) for a, who, _ in audit_of(env, wo.id) if a.startswith("reversal")] == [
        ("reversal.requested", "controller"),
        ("reversal.rejected", "cfo"),
    ]
