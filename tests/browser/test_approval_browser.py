"""An approval in a real browser: Debian's chromium, driven by Playwright, against a real Airflow api-server.

The people sign in on Airflow's own login page (SimpleAuthManager) and answer the request in the task's
*Required Action* tab, the form Airflow builds from the operator's params:

1. the CFO (not an approver of the AR manager's tier) opens the request: the body says who may answer, Airflow
   offers no answer button, and an answer sent with the CFO's own browser session is refused (403); the request's
   text then says at the top that the CFO was refused, why, and who may decide;
2. the AR manager picks one invoice out of the pick list, writes a comment and approves;
3. the controller (four eyes: not the approver) sees exactly what will be posted and confirms;
4. the ledger shows the batch posted without the picked invoice, the comment stored with the approval.

Screenshots of every step go to ``$WRITEOFFS_DATA_DIR/screenshots/`` (linked from docs/approvals.md).
"""

from __future__ import annotations

import json
import os
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, text

from scripts.airflow_local import start_airflow
from tests.browser.conftest import sign_in
from tests.factories import entity
from tests.integration.approval_support import AS_OF, make_batch, pending_requests, write_policy
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import approvals, invoices, journal_entries, writeoff_batches, writeoffs
from writeoffs_airflow.alerts import required_action_url

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_approval"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
COMMENT = "Agency report 2026-11 reviewed; INV 2 disputed <b>by phone</b>"


def screenshots_dir() -> Path:
    """``$WRITEOFFS_DATA_DIR/screenshots`` of whoever ran the tests (tests/conftest.py keeps it, before the session
    swaps in its own throw-away data dir); ``.data/screenshots`` by default."""
    explicit = os.environ.get("WRITEOFFS_SCREENSHOT_DIR")
    out = Path(explicit) if explicit else Path(os.environ.get("WRITEOFFS_DATA_DIR") or ROOT / ".data") / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def airflow_ledger(tmp_path_factory, pg_admin, ledger_templates, airflow_metadata_template):
    tmp = tmp_path_factory.mktemp("browser")
    schema = f"wb_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)  # a clone of the session's migrated ledger
    url = schema_url(PG_URL, schema)
    ledger = make_engine(url)
    with ledger.begin() as conn:
        entity(conn)
        batch_id, refs = make_batch(conn, ["1200.00", "250.00", "75.25"], tier="ar_manager", prefix="ui")
    server = start_airflow(
        metadata_template=airflow_metadata_template,
        dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
        env={
            "WRITEOFFS_LEDGER_URL": url,
            "WRITEOFFS_POLICY_PATH": str(write_policy(tmp / "policy.yaml")),
            "WRITEOFFS_DATA_DIR": str(tmp / "data"),
        },
    )
    try:
        run_id = f"browser_{uuid.uuid4().hex[:8]}"
        server.trigger(DAG_ID, run_id, {"as_of": AS_OF.isoformat()}, user="preparer")
        yield server, ledger, run_id, batch_id, refs
    finally:
        server.stop()
        ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def wait_request(server, run_id: str, step: str, timeout: float = 180) -> dict:
    """The pending request of the step, answered as soon as it is there (no answer is lost: docs/approvals.md)."""
    client = server.client("admin")

    def found():
        for d in pending_requests(client, DAG_ID, run_id):
            if d["task_instance"]["task_id"].endswith(step):
                return d
        return None

    return server.wait_for(found, timeout=timeout, what=f"{step} request")


def link_of(server, detail: dict) -> str:
    ti = detail["task_instance"]
    return required_action_url(DAG_ID, ti["dag_run_id"], ti["task_id"], ti["map_index"], base_url=server.base_url)


def open_request(browser, server, user: str, url: str):
    """Signed in as ``user`` on the request's page (Airflow's login redirects back to it)."""
    context, page = sign_in(browser, server, user, url.removeprefix(server.base_url))
    page.wait_for_selector("[data-testid^=hitl-option-]", timeout=60_000)
    return context, page


def shot(page, name: str) -> Path:
    path = screenshots_dir() / f"approval-{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"screenshot {path} is (nearly) empty"
    return path


def test_approver_excludes_by_picking_and_comments_controller_confirms(browser, airflow_ledger) -> None:
    server, ledger, run_id, batch_id, refs = airflow_ledger
    request = wait_request(server, run_id, "approve")
    url = link_of(server, request)

    # 1. Wrong tier: the CFO is not an approver of the AR manager's tier.
    context, page = open_request(browser, server, "cfo", url)
    body = page.inner_text("body")
    assert "Who may approve" in body and "ar_manager, controller" in body, "the request does not say who may answer"
    # The form is shown to any signed-in user who may see the DAG; the answer is refused by the server.
    with page.expect_response(lambda r: r.request.method == "PATCH" and "hitlDetails" in r.url) as answered:
        page.get_by_test_id("hitl-option-Approve").click()
    assert answered.value.status == 403, f"the CFO's answer was accepted: HTTP {answered.value.status}"
    page.get_by_text("Access Denied").wait_for(timeout=10_000)
    # The ledger refused it before Airflow took it: the request stays open, and its text now says at the top who was
    # refused, why and who may decide.
    page.reload()
    page.get_by_text("Answer refused.").wait_for(timeout=30_000)
    note = page.inner_text("body")
    assert "The approve answer by cfo was not recorded" in note, "the request does not say who was refused"
    assert "Who may decide (ar_manager tier): ar_manager, controller." in note, "nor who may decide"
    shot(page, "0-wrong-tier-refused")
    assert batch_status(ledger, batch_id) == "awaiting_approval"
    context.close()

    # 2. The AR manager picks the 250.00 invoice out of the list, comments and approves.
    picked = refs[1]
    context, page = open_request(browser, server, "ar_manager", url)
    shot(page, "1-request")
    page.get_by_role("combobox", name="Select one or multiple values").click()
    page.get_by_text(f"{picked} ·", exact=False).first.click()
    page.keyboard.press("Escape")
    page.fill("#element_comment", COMMENT)
    shot(page, "2-picked-and-commented")
    page.get_by_test_id("hitl-option-Approve").click()
    server.wait_for(
        lambda: batch_status(ledger, batch_id) == "approved", timeout=120, what="approval recorded in the ledger"
    )
    context.close()

    # 3. The controller confirms (four eyes above 1,000 USD: the approver may not); the request shows the result.
    confirm = wait_request(server, run_id, "confirm")
    context, page = open_request(browser, server, "controller", link_of(server, confirm))
    body = page.inner_text("body")
    assert picked in body and "1,275.25 USD" in body, "the confirmation does not show what will be posted"
    shot(page, "3-confirm")
    page.get_by_test_id("hitl-option-Confirm").click()
    server.wait_for(lambda: batch_status(ledger, batch_id) == "posted", timeout=180, what="batch posted")
    context.close()

    # 4. The ledger: the picked invoice is not written off, the others are; the comment is stored as typed.
    with ledger.connect() as conn:
        rows = conn.execute(
            select(invoices.c.invoice_ref, writeoffs.c.status, writeoffs.c.amount)
            .join(invoices, invoices.c.id == writeoffs.c.invoice_id)
            .where(writeoffs.c.batch_id == batch_id)
        ).all()
        decided = conn.execute(
            select(approvals.c.step, approvals.c.approver, approvals.c.comment, approvals.c.excluded_invoice_refs)
            .where(approvals.c.batch_id == batch_id)
            .order_by(approvals.c.id)
        ).all()
        entries = conn.execute(select(journal_entries.c.id).where(journal_entries.c.batch_id == batch_id)).all()
    status = {r.invoice_ref: r.status for r in rows}
    assert status[picked] == "excluded"
    assert {status[r] for r in refs if r != picked} == {"posted"}
    posted = sum((r.amount for r in rows if r.status == "posted"), Decimal(0))
    assert posted == Decimal("1275.25")
    by_step = {d.step: d for d in decided}
    assert by_step["approve"].approver == "ar_manager" and by_step["confirm"].approver == "controller"
    assert by_step["approve"].comment == COMMENT
    assert json.loads(by_step["approve"].excluded_invoice_refs) == [picked]
    assert entries, "no journal entry for the batch"


def batch_status(ledger, batch_id: int) -> str:
    with ledger.connect() as conn:
        return conn.execute(select(writeoff_batches.c.status).where(writeoff_batches.c.id == batch_id)).scalar_one()
