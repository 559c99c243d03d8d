"""The write-off workspace in a real browser (Debian's chromium, Playwright) against a real Airflow api-server.

People sign in on Airflow's login page and use the plugin's pages (``/writeoffs``):

- the auditor (a workspace reader, Airflow role *viewer*) sees the batch, the reconciliation, the KPI charts, an
  invoice's trail with the audit chain intact and the validation Data Docs, but no answer form;
- the controller sees the batch and the KPI charts, and gets 403 on the CFO tier's batch;
- the CFO (not of the batch's tier) gets 403 on the batch;
- the AR manager gets 403 on the CFO tier's batch, ticks one invoice on the batch page, comments and approves: the
  answer goes through Airflow's HITL API as the AR manager; the controller confirms (four eyes); the posted batch
  lacks the ticked invoice.

Screenshots go to ``$WRITEOFFS_DATA_DIR/screenshots/workspace-*.png`` of whoever runs the tests (``.data`` by
default; linked from README.md and docs/workspace.md).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text

from scripts.airflow_local import DEFAULT_USERS, start_airflow
from tests.browser.conftest import sign_in
from tests.browser.test_approval_browser import batch_status, screenshots_dir
from tests.factories import entity
from tests.integration.approval_support import AS_OF, answer, make_batch, pending_requests, write_policy
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import approvals, invoices, writeoffs

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_approval"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COMMENT = "INV 2: customer disputes the delivery, keep it open"


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_admin, ledger_templates, airflow_metadata_template):
    tmp = tmp_path_factory.mktemp("workspace_browser")
    schema = f"wsb_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)  # a clone of the session's migrated ledger
    url = schema_url(PG_URL, schema)
    ledger = make_engine(url)
    with ledger.begin() as conn:
        entity(conn)
        batch_id, refs = make_batch(conn, ["1200.00", "250.00", "75.25"], tier="ar_manager", prefix="wsb")
        cfo_batch, _ = make_batch(conn, ["60000.00"], tier="cfo", prefix="wsc")
    server = start_airflow(
        metadata_template=airflow_metadata_template,
        dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
        users={**DEFAULT_USERS, "auditor": "viewer"},
        env={
            "WRITEOFFS_LEDGER_URL": url,
            "WRITEOFFS_POLICY_PATH": str(write_policy(tmp / "policy.yaml")),
            "WRITEOFFS_DATA_DIR": str(tmp / "data"),
            "WRITEOFFS_WORKSPACE_READERS": "auditor",
        },
    )
    try:
        run_id = f"wsb_{uuid.uuid4().hex[:8]}"
        server.trigger(DAG_ID, run_id, {"as_of": AS_OF.isoformat()}, user="preparer")
        yield server, ledger, run_id, batch_id, refs, cfo_batch
    finally:
        server.stop()
        ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def open_as(browser, server, user: str, path: str):
    """Signed in on Airflow's login page, then at a workspace page; returns (context, page, response)."""
    context, page = sign_in(browser, server, user)
    return context, page, page.goto(f"{server.base_url}{path}")


def shot(page, name: str) -> None:
    path = screenshots_dir() / f"workspace-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"screenshot {path} is (nearly) empty"


def assert_charts_drawn(page) -> None:
    """The KPI page shows its charts: each SVG has marks and takes room on the screen."""
    charts = page.locator("#kpi-charts svg")
    assert charts.count() >= 4, "the KPI page shows no charts"
    sizes = page.eval_on_selector_all("#kpi-charts svg", "els => els.map(e => e.outerHTML.length)")
    assert min(sizes) > 200, f"empty chart(s): {sizes}"
    for k in range(charts.count()):
        box = charts.nth(k).bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, f"chart {k} not drawn: {box}"


def wait_request(server, run_id: str, step: str, batch_id: int) -> dict:
    client = server.client("admin")

    def found():
        return next(
            (
                d
                for d in pending_requests(client, DAG_ID, run_id)
                if d["task_instance"]["task_id"].endswith(step)
                and d["task_instance"]["rendered_map_index"] == f"batch {batch_id}"
            ),
            None,
        )

    return server.wait_for(found, timeout=180, what=f"{step} request")


def test_roles_see_what_they_may_and_the_ar_manager_excludes_with_a_checkbox(browser, env) -> None:
    server, ledger, run_id, batch_id, refs, cfo_batch = env
    wait_request(server, run_id, "approve", batch_id)
    batch_path = f"/writeoffs/batches/{batch_id}"

    # Auditor: a reader sees the batch, the reconciliation and the KPI charts; no answer form.
    context, page, resp = open_as(browser, server, "auditor", batch_path)
    assert resp.status == 200 and page.locator("table#items tbody tr").count() == 3
    assert page.locator("#answer-form").count() == 0 and page.locator("[data-testid=exclude-box]").count() == 0
    shot(page, "auditor-batch")
    resp = page.goto(f"{server.base_url}/writeoffs/reconciliation")
    assert resp.status == 200
    resp = page.goto(f"{server.base_url}/writeoffs/kpis")
    assert resp.status == 200
    assert_charts_drawn(page)
    shot(page, "auditor-kpis")
    # The invoice trail with the audit chain's status, computed by the api-server with the audit key.
    resp = page.goto(f"{server.base_url}/writeoffs/trail?invoice={refs[0]}&entity=US01")
    assert resp.status == 200 and refs[0] in page.inner_text("pre#trail")
    chain = page.locator("#audit-chain")
    assert chain.get_attribute("data-state") == "intact", chain.inner_text()
    assert page.locator("table#trail-audit tbody tr[data-audit-row]").count() >= 1  # the approval request's row
    shot(page, "auditor-trail")
    assert page.goto(f"{server.base_url}/writeoffs/validation").status == 200
    shot(page, "auditor-validation")
    context.close()

    # Controller: an approver of the AR manager's tier sees that batch (and may answer it), and the
    # reconciliation; the CFO tier's batch waits for the CFO's approval: 403 for the controller until then.
    context, page, resp = open_as(browser, server, "controller", batch_path)
    assert resp.status == 200 and page.locator("#answer-form").count() == 1
    assert page.goto(f"{server.base_url}/writeoffs/reconciliation").status == 200
    resp = page.goto(f"{server.base_url}/writeoffs/batches/{cfo_batch}")
    assert resp.status == 403 and "may not see batch" in page.inner_text("body")
    shot(page, "controller-403-cfo-batch")
    assert page.goto(f"{server.base_url}/writeoffs/kpis").status == 200
    assert_charts_drawn(page)
    shot(page, "controller-kpis")
    context.close()

    # CFO: not of the AR manager's tier, not a reader: 403 on the batch.
    context, page, resp = open_as(browser, server, "cfo", batch_path)
    assert resp.status == 403 and "may not see batch" in page.inner_text("body")
    shot(page, "cfo-403")
    context.close()

    # AR manager: tick the 250.00 invoice, comment, approve.
    picked = refs[1]
    context, page, resp = open_as(browser, server, "ar_manager", "/writeoffs/queue")
    assert resp.status == 200 and str(batch_id) in page.inner_text("table")
    shot(page, "ar-manager-queue")
    resp = page.goto(f"{server.base_url}/writeoffs/batches/{cfo_batch}")  # the CFO tier's batch: not theirs
    assert resp.status == 403 and "may not see batch" in page.inner_text("body")
    shot(page, "ar-manager-403-cfo-batch")
    page.goto(f"{server.base_url}{batch_path}")
    page.locator(f"[data-testid=exclude-box][value='{picked}']").check()
    page.fill("#answer-comment", COMMENT)
    shot(page, "ar-manager-ticked")
    page.click("#answer-approve")
    result = page.locator("#answer-result")
    result.wait_for(timeout=30_000)
    assert result.get_attribute("data-status") == "200", result.inner_text()
    assert picked in result.inner_text()
    shot(page, "ar-manager-answered")
    context.close()
    server.wait_for(lambda: batch_status(ledger, batch_id) == "approved", timeout=120, what="approval recorded")

    # The controller confirms (four eyes above 1,000 USD), as in the Required Action form.
    confirm = wait_request(server, run_id, "confirm", batch_id)
    with server.client("controller") as c:
        assert answer(c, confirm, "Confirm", {"comment": None}).status_code == 200
    server.wait_for(lambda: batch_status(ledger, batch_id) == "posted", timeout=180, what="batch posted")

    with ledger.connect() as conn:
        status = dict(
            conn.execute(
                select(invoices.c.invoice_ref, writeoffs.c.status)
                .join(invoices, invoices.c.id == writeoffs.c.invoice_id)
                .where(writeoffs.c.batch_id == batch_id)
            ).all()
        )
        approve = conn.execute(
            select(approvals.c.approver, approvals.c.comment, approvals.c.excluded_invoice_refs).where(
                approvals.c.batch_id == batch_id, approvals.c.step == "approve"
            )
        ).one()
    assert status[picked] == "excluded" and {status[r] for r in refs if r != picked} == {"posted"}
    assert approve.approver == "ar_manager" and approve.comment == COMMENT
    assert json.loads(approve.excluded_invoice_refs) == [picked]
