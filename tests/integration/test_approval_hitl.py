"""The approval DAG on a real Airflow (api-server + scheduler + dag-processor), answered through the REST API.

One Airflow instance and one DAG run serve every scenario: the run maps one approval flow per batch, and the
tests answer each batch's requests like approvers would (``PATCH .../hitlDetails`` with their own token). The
ledger is a PostgreSQL schema shared by the test process and the Airflow workers.

Scenarios (batch -> what the approver does -> what must hold in the ledger):
approve, then confirm by a second person (four eyes above 1,000 USD; the approver is not asked and gets 403) ->
posted; reject -> nothing posted; exclusion (a typo is refused by our check and the request re-opened) -> excluded
invoice not posted, the same person confirms below the four-eyes amount; the preparer is not asked to approve their
own batch (403, refused by the ledger before Airflow takes it) and another approver decides; a wrong-tier user -> 403
and the request's text then says who was refused, why and who may decide; over-limit batch ->
routed up, the lower tier cannot answer, the CFO confirms the controller's approval; no answer -> expired; no answer
on an escalating tier -> escalated, then expired; nothing posted for those. The run is triggered by ``preparer``:
every batch records them as ``routed_by`` (who may then answer none of them; proven in the ledger tests).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from scripts.airflow_local import AirflowServer, start_airflow
from tests.factories import entity
from tests.integration.approval_support import AS_OF, answer, make_batch, pending_requests, write_policy
from tests.receivers import SmtpReceiver, WebhookReceiver
from writeoffs.db.engine import make_engine, schema_url
from writeoffs.db.schema import approvals, audit_log, invoices, journal_entries, writeoff_batches, writeoffs

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "writeoff_approval"
PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Scenario:
    """Shared state of the module: the server, the ledger, the run and the batch ids by scenario name."""

    server: AirflowServer
    ledger: Engine
    run_id: str
    batches: dict[str, int]
    refs: dict[str, list[str]]
    started: float
    policy: Path
    slack: WebhookReceiver
    smtp: SmtpReceiver


@pytest.fixture(scope="module")
def sc(tmp_path_factory, pg_admin, ledger_templates, airflow_metadata_template) -> Scenario:
    s = Scenario()
    tmp = tmp_path_factory.mktemp("approval")
    schema = f"wt_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)  # a clone of the session's migrated ledger
    url = schema_url(PG_URL, schema)
    s.ledger = make_engine(url)
    s.policy = write_policy(tmp / "policy.yaml")
    s.batches, s.refs = {}, {}
    with s.ledger.begin() as conn:
        entity(conn)
        for name, amounts, tier, preparer in [
            ("approve", ["1200.00", "800.50"], "ar_manager", "preparer"),
            ("reject", ["300.00"], "ar_manager", "preparer"),
            ("exclude", ["100.00", "250.00", "75.25"], "ar_manager", "preparer"),
            ("self", ["640.00"], "ar_manager", "ar_manager"),
            ("over_limit", ["7000.00", "150.00"], "ar_manager", "preparer"),
            ("timeout", ["15.00"], "quick", "preparer"),
            ("escalate", ["5.00"], "quick_escalate", "preparer"),
        ]:
            s.batches[name], s.refs[name] = make_batch(conn, amounts, tier=tier, prepared_by=preparer, prefix=name)
    # Local stand-ins for Slack and the mail server: the approvers' notices must reach them.
    s.slack, s.smtp = WebhookReceiver().__enter__(), SmtpReceiver().__enter__()
    smtp_conn = json.loads(s.smtp.airflow_conn(to=""))
    smtp_conn["extra"]["approver_addresses"] = {u: f"{u}@example.com" for u in ("ar_manager", "controller", "cfo")}
    try:
        s.server = start_airflow(
            metadata_template=airflow_metadata_template,
            dag_files=[ROOT / "dags" / f"{DAG_ID}.py"],
            env={
                "WRITEOFFS_LEDGER_URL": url,
                "WRITEOFFS_POLICY_PATH": str(s.policy),
                "WRITEOFFS_DATA_DIR": str(tmp / "data"),
                "AIRFLOW_CONN_WRITEOFFS_SLACK": s.slack.airflow_conn(),
                "AIRFLOW_CONN_WRITEOFFS_SMTP": json.dumps(smtp_conn),
            },
        )
    except BaseException:
        s.slack.__exit__(None, None, None)
        s.smtp.__exit__(None, None, None)
        raise
    try:
        s.run_id = f"test_{uuid.uuid4().hex[:8]}"
        s.server.trigger(DAG_ID, s.run_id, {"as_of": AS_OF.isoformat()}, user="preparer")
        s.started = time.monotonic()
        yield s
    finally:
        s.server.stop()
        s.slack.__exit__(None, None, None)
        s.smtp.__exit__(None, None, None)
        s.ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


# ------------------------------------------------------------------------------------------------ helpers


def request_for(sc: Scenario, name: str, step: str, user: str = "admin", timeout: float = 120) -> dict:
    """Wait for the pending request of a batch and step (``approve`` matches the escalation attempts too)."""
    batch_id = sc.batches[name]

    def find():
        with sc.server.client(user) as c:
            for d in pending_requests(c, DAG_ID, sc.run_id):
                tid = d["task_instance"]["task_id"]
                if f"batch {batch_id}:" in d["subject"] and tid.split(".")[-1].startswith(step):
                    return d  # answered at once: no answer is lost (tests/integration/test_early_answer.py)
        return None

    return sc.server.wait_for(find, timeout=timeout, what=f"{step} request of batch {name} ({batch_id})")


def batch_status(sc: Scenario, name: str) -> str:
    with sc.ledger.connect() as conn:
        return conn.execute(
            select(writeoff_batches.c.status).where(writeoff_batches.c.id == sc.batches[name])
        ).scalar_one()


def wait_status(sc: Scenario, name: str, wanted: set[str], timeout: float = 90, interval: float = 0.25) -> str:
    return sc.server.wait_for(
        lambda: (st := batch_status(sc, name)) in wanted and st,
        timeout=timeout,
        interval=interval,
        what=f"batch {name} status in {wanted}",
    )


def entries_of(sc: Scenario, name: str) -> int:
    with sc.ledger.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(journal_entries)
            .where(journal_entries.c.batch_id == sc.batches[name], journal_entries.c.status == "posted")
        ).scalar_one()


def decisions(sc: Scenario, name: str) -> dict[str, object]:
    with sc.ledger.connect() as conn:
        return {r.step: r for r in conn.execute(select(approvals).where(approvals.c.batch_id == sc.batches[name]))}


def audit_actions(sc: Scenario, name: str) -> list[tuple[str, str, dict]]:
    with sc.ledger.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.actor, audit_log.c.details)
            .where(audit_log.c.object_type == "writeoff_batch", audit_log.c.object_id == str(sc.batches[name]))
            .order_by(audit_log.c.id)
        ).all()
    return [(r.action, r.actor, json.loads(r.details)) for r in rows]


def mail_about(sc: Scenario, subject_start: str, batch_id: int, timeout: float = 60):
    """The first e-mail whose subject starts with ``subject_start`` and names the batch."""

    def found():
        for m in list(sc.smtp.messages):
            if m.subject.startswith(subject_start) and f"batch {batch_id}:" in m.subject:
                return m
        return None

    return sc.server.wait_for(
        found,
        timeout=timeout,
        what=f"an e-mail {subject_start!r} about batch {batch_id}",
    )


def ok(response) -> dict:
    assert response.status_code == 200, response.text


def ok_json(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()
    return response.json()


NO_PARAMS = {"exclude_invoice_refs": "", "comment": ""}


# ------------------------------------------------------------------------------------------------ scenarios


def test_approve_then_confirm_posts_within_10_seconds(sc: Scenario) -> None:
    req = request_for(sc, "approve", "approve")
    # What the approver sees: counts, total, breakdowns, evidence, link to the full list; assigned to the tier.
    assert {u["id"] for u in req["assigned_users"]} == {"ar_manager", "controller"}
    body = req["body"]
    for expected in (
        "| Invoices | 2 |",
        "2,000.50 USD",
        "By reason",
        "| Uncollectible after collections | 2 | 2,000.50 USD |",
        "By aging bucket",
        "365+",
        "| Contact attempts | Demand letters | Agency days |",
        "| 12 | 3 | 90 |",
        "| Who may approve | ar_manager, controller |",
        "no answer by then: the batch expires, nothing is posted |",
        f"Full candidate list (2 rows, all evidence): {sc.server.base_url}/writeoffs/batches/",
        "| Then confirmed | by a second person (ar_manager, controller), not the approver: four eyes |",
        "**Approve** does not post yet: a second request, **Confirm**, then opens",
    ):
        assert expected in body, expected
    assert req["subject"].startswith("ar_manager tier · 2,000.50 USD · US01 — batch ")
    assert req["task_instance"]["rendered_map_index"] == f"batch {sc.batches['approve']}"
    # The full list is the workspace plugin's CSV over HTTP, behind Airflow's login (no file:// link).
    csv_url = body.split("Full candidate list (2 rows, all evidence): ", 1)[1].split()[0]
    assert csv_url == f"{sc.server.base_url}/writeoffs/batches/{sc.batches['approve']}/candidates.csv"
    assert httpx.get(csv_url, timeout=30).status_code == 401
    got = httpx.get(csv_url, headers={"Authorization": f"Bearer {sc.server.token('ar_manager')}"}, timeout=30)
    assert got.status_code == 200 and got.text.count("INV-approve-") == 2

    # The assigned approvers were told, by e-mail and Slack, with a link that opens this very request.
    mail = mail_about(sc, req["subject"], sc.batches["approve"])
    assert sorted(mail.rcpt_tos) == ["ar_manager@example.com", "controller@example.com"]
    (link,) = set(re.findall(r'href="([^"]+)"', mail.text()))
    ti = req["task_instance"]
    assert link == (
        f"{sc.server.base_url}/dags/{DAG_ID}/runs/{quote(sc.run_id, safe='')}/tasks/{ti['task_id']}"
        f"/mapped/{ti['map_index']}/required_actions"
    )
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()  # the UI serves the page
    # The workspace's batch page links the same request (found in Airflow's metadata DB by the batch's map label).
    ws_page = httpx.get(
        f"{sc.server.base_url}/writeoffs/batches/{sc.batches['approve']}",
        headers={"Authorization": f"Bearer {sc.server.token('controller')}"},
        timeout=30,
    )
    assert ws_page.status_code == 200
    assert f'id="required-action" data-testid="required-action" href="{html.escape(link)}"' in ws_page.text
    _, dag, _, run, _, task, _, index, _ = urlsplit(link).path.strip("/").split("/")
    with sc.server.client("ar_manager") as c:  # and the page's task instance is the request
        detail = ok_json(c.get(f"/dags/{dag}/dagRuns/{unquote(run)}/taskInstances/{task}/{index}/hitlDetails"))
    assert detail["subject"] == req["subject"] and detail["task_instance"]["id"] == ti["id"]
    assert any(link in r.json["text"] and req["subject"] in r.json["text"] for r in list(sc.slack.requests))
    with sc.server.client("ar_manager") as c:
        ok(answer(c, req, "Approve", {"exclude_invoice_refs": "", "comment": "reviewed agency report"}))
    conf = request_for(sc, "approve", "confirm")
    assert "| Invoices to write off | 2 |" in conf["body"] and "2,000.50 USD" in conf["body"]
    assert batch_status(sc, "approve") == "approved" and entries_of(sc, "approve") == 0

    # Four eyes (2,000.50 > 1,000): the confirm request goes to the tier's other people, not to the approver.
    assert {u["id"] for u in conf["assigned_users"]} == {"controller"}
    with sc.server.client("ar_manager") as c:
        r = answer(c, conf, "Confirm", {"comment": ""})
    assert r.status_code == 403, r.text
    assert "four eyes: 'ar_manager' approved this batch and may not also confirm it" in r.json()["detail"]
    with sc.server.client("controller") as c:
        t0 = time.monotonic()
        ok(answer(c, conf, "Confirm", {"comment": ""}))
    wait_status(sc, "approve", {"posted"}, timeout=60, interval=0.05)
    latency = time.monotonic() - t0
    print(f"\nMEASURED answer->posted latency: {latency:.2f} s")
    assert latency <= 10, f"confirm -> posted took {latency:.1f} s"
    assert entries_of(sc, "approve") == 2
    rows = decisions(sc, "approve")
    assert rows["approve"].approver == "ar_manager" and rows["approve"].decision == "approved"
    assert rows["approve"].comment == "reviewed agency report" and rows["approve"].tier == "ar_manager"
    assert rows["confirm"].decision == "confirmed" and rows["approve"].policy_version == "test"
    assert rows["confirm"].approver == "controller"
    actions = [a for a, _, _ in audit_actions(sc, "approve")]
    assert "approval.approved" in actions and "approval.confirmed" in actions


def test_reject_posts_nothing(sc: Scenario) -> None:
    req = request_for(sc, "reject", "approve")
    with sc.server.client("ar_manager") as c:
        ok(answer(c, req, "Reject", {"exclude_invoice_refs": "", "comment": "customer promised payment"}))
    assert wait_status(sc, "reject", {"rejected"}) == "rejected"
    sc.server.wait_for(
        lambda: (
            {
                st
                for (tid, mi), st in sc.server.task_states(DAG_ID, sc.run_id).items()
                if tid in ("batch.confirm", "batch.post")
                and mi == sorted(sc.batches.values()).index(sc.batches["reject"])
            }
            == {"skipped"}
        ),
        timeout=90,
        what="confirm and post of the rejected batch to be skipped",
    )
    assert entries_of(sc, "reject") == 0
    assert decisions(sc, "reject")["approve"].decision == "rejected"
    with sc.ledger.connect() as conn:
        assert (
            conn.execute(select(invoices.c.status).where(invoices.c.invoice_ref == "INV-reject-1")).scalar() == "open"
        )


def test_exclusion_is_honoured(sc: Scenario) -> None:
    req = request_for(sc, "exclude", "approve")
    with sc.server.client("controller") as c:
        # A typo in the exclusion list is refused before Airflow takes the answer (the api-server's answer gate asks
        # the ledger first): the request stays open and its text now says why, at the top.
        r = answer(c, req, "Approve", {"exclude_invoice_refs": "INV-nope-9", "comment": ""})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "The approve answer by controller was not recorded: " in detail and "INV-nope-9" in detail
    assert "Who may decide (ar_manager tier): ar_manager, controller." in detail
    reopened = request_for(sc, "exclude", "approve")
    assert reopened["task_instance"]["try_number"] == req["task_instance"]["try_number"]  # the same request
    assert reopened["body"].startswith("> **Answer refused.** The approve answer by controller was not recorded")
    assert "INV-nope-9" in reopened["body"].split("---", 1)[0] and "The request stays open until " in reopened["body"]
    assert reopened["body"].split("\n\n---\n\n", 1)[1] == req["body"]  # the request's own text, unchanged below
    req = request_for(sc, "exclude", "approve")
    assert batch_status(sc, "exclude") == "awaiting_approval"
    with sc.server.client("controller") as c:
        ok(answer(c, req, "Approve", {"exclude_invoice_refs": "INV-exclude-2", "comment": "INV-2 in dispute"}))
    conf = request_for(sc, "exclude", "confirm")
    assert "| Invoices to write off | 2 |" in conf["body"] and "175.25 USD" in conf["body"]
    assert "Excluded (not posted): INV-exclude-2" in conf["body"]
    with sc.server.client("controller") as c:
        ok(answer(c, conf, "Confirm", {"comment": ""}))
    wait_status(sc, "exclude", {"posted"})
    assert entries_of(sc, "exclude") == 2
    with sc.ledger.connect() as conn:
        st = dict(
            conn.execute(
                select(invoices.c.invoice_ref, writeoffs.c.status)
                .join(invoices, invoices.c.id == writeoffs.c.invoice_id)
                .where(writeoffs.c.batch_id == sc.batches["exclude"])
            ).all()
        )
        inv2 = conn.execute(select(invoices.c.status).where(invoices.c.invoice_ref == "INV-exclude-2")).scalar()
    assert st["INV-exclude-2"] == "excluded" and inv2 == "open"
    assert st["INV-exclude-1"] == st["INV-exclude-3"] == "posted"
    assert json.loads(decisions(sc, "exclude")["approve"].excluded_invoice_refs) == ["INV-exclude-2"]
    assert any(a == "approval.refused" for a, _, _ in audit_actions(sc, "exclude"))


def test_the_preparer_is_not_asked_and_another_approver_decides(sc: Scenario) -> None:
    req = request_for(sc, "self", "approve")
    # ar_manager prepared this batch: the ledger names who may answer (the tier's approvers minus the preparer and
    # whoever routed it), and refuses the preparer's answer before Airflow takes it.
    assert {u["id"] for u in req["assigned_users"]} == {"controller"}
    with sc.server.client("ar_manager") as c:
        r = answer(c, req, "Approve", NO_PARAMS)
    assert r.status_code == 403 and "nobody may approve their own batch" in r.json()["detail"], r.text
    assert batch_status(sc, "self") == "awaiting_approval" and "approve" not in decisions(sc, "self")
    with sc.server.client("controller") as c:
        ok(answer(c, req, "Approve", NO_PARAMS))
        conf = request_for(sc, "self", "confirm")
        # 640 USD is below the tier's four-eyes amount: the approver may finalise their own review.
        assert {u["id"] for u in conf["assigned_users"]} == {"controller"}
        ok(answer(c, conf, "Confirm", {"comment": ""}))
    wait_status(sc, "self", {"posted"})
    assert decisions(sc, "self")["approve"].approver == "controller"


def test_a_wrong_tier_user_is_refused_and_the_request_then_says_why(sc: Scenario) -> None:
    req = request_for(sc, "over_limit", "approve")
    with sc.server.client("outsider") as c:
        # The answer names someone else as the approver: identity is the token's, never the payload's.
        r = answer(c, req, "Approve", {**NO_PARAMS, "comment": "approved by cfo"})
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert detail.startswith("The approve answer by outsider was not recorded: ")
    assert "Who may decide (controller tier): controller." in detail
    after = request_for(sc, "over_limit", "approve")
    assert after["response_received"] is False and after["task_instance"]["state"] == "awaiting_input"
    assert after["body"].startswith("> **Answer refused.** The approve answer by outsider was not recorded")
    assert "Who may decide (controller tier): controller." in after["body"].split("---", 1)[0]
    refused = [(actor, d) for a, actor, d in audit_actions(sc, "over_limit") if a == "approval.refused"]
    assert refused and refused[-1][0] == "outsider" and refused[-1][1]["step"] == "approve"
    assert batch_status(sc, "over_limit") == "awaiting_approval"


def test_over_limit_batch_goes_up_and_lower_tier_cannot_answer(sc: Scenario) -> None:
    req = request_for(sc, "over_limit", "approve")
    # The policy put it in ar_manager's tier, but its largest item (7,000) is above that tier's 5,000 limit:
    # the request went to the controller tier instead, recorded as a system escalation.
    assert {u["id"] for u in req["assigned_users"]} == {"controller"}
    escal = [d for a, _, d in audit_actions(sc, "over_limit") if a == "approval.escalated"]
    assert escal and escal[0]["escalated_to"] == "controller"
    with sc.server.client("ar_manager") as c:
        r = answer(c, req, "Approve", NO_PARAMS)
    assert r.status_code == 403 and "Who may decide (controller tier): controller." in r.json()["detail"], r.text
    # The latest refusal replaces the earlier note (every refusal stays in the audit log).
    note = request_for(sc, "over_limit", "approve")["body"]
    assert (
        note.startswith("> **Answer refused.** The approve answer by ar_manager") and note.count("Answer refused") == 1
    )
    with sc.server.client("controller") as c:
        ok(answer(c, req, "Approve", NO_PARAMS))
    conf = request_for(sc, "over_limit", "confirm")
    # Controller tier: four eyes at every amount; its confirmers are the controller and the CFO, minus the approver.
    assert {u["id"] for u in conf["assigned_users"]} == {"cfo"}
    with sc.server.client("cfo") as c:
        ok(answer(c, conf, "Confirm", {"comment": ""}))
    wait_status(sc, "over_limit", {"posted"})
    assert decisions(sc, "over_limit")["confirm"].approver == "cfo"
    row = decisions(sc, "over_limit")["approve"]
    assert row.tier == "controller" and row.limit_amount == Decimal("50000")


def test_timeout_expires_and_posts_nothing(sc: Scenario) -> None:
    # 18 s response timeout (tier "quick", on_timeout: expire): nobody answers.
    assert wait_status(sc, "timeout", {"expired", "approved", "posted"}, timeout=120) == "expired"
    row = decisions(sc, "timeout")["approve"]
    assert row.decision == "expired" and row.approver == "airflow:writeoff_approval"
    assert entries_of(sc, "timeout") == 0


def test_timeout_on_escalating_tier_goes_to_next_tier_then_expires(sc: Scenario) -> None:
    assert wait_status(sc, "escalate", {"expired", "approved", "posted"}, timeout=150) == "expired"
    actions = audit_actions(sc, "escalate")
    escal = [d for a, _, d in actions if a == "approval.escalated"]
    assert escal and escal[0]["escalated_to"] == "quick"
    requested = [d["tier"] for a, _, d in actions if a == "approval.requested.approve"]
    assert requested == ["quick_escalate", "quick"]
    assert decisions(sc, "escalate")["approve"].tier == "quick"
    assert entries_of(sc, "escalate") == 0


def test_run_finishes_and_every_decision_is_audited(sc: Scenario) -> None:
    assert sc.server.wait_run(DAG_ID, sc.run_id, timeout=120) == "success"
    with sc.ledger.connect() as conn:
        from writeoffs import audit

        assert audit.verify(conn) == []
        posted = conn.execute(
            select(func.count()).select_from(writeoff_batches).where(writeoff_batches.c.status == "posted")
        ).scalar_one()
        routed = set(conn.execute(select(writeoff_batches.c.routed_by)).scalars())
    assert posted == 4  # approve, exclude, self (by controller), over_limit
    assert routed == {"preparer"}  # the run's authenticated triggering user, on every batch it claimed
    # Mapped task instances are named by batch in the UI, not by map index.
    with sc.server.client() as c:
        tis = ok_json(c.get(f"/dags/{DAG_ID}/dagRuns/{sc.run_id}/taskInstances", params={"limit": 1000}))
    labels = {
        (t["task_id"], t["rendered_map_index"]) for t in tis["task_instances"] if t["task_id"].startswith("batch.")
    }
    for name in ("approve", "exclude", "self", "over_limit"):
        for task_id in ("batch.approve", "batch.confirm", "batch.post"):
            assert (task_id, f"batch {sc.batches[name]}") in labels, (task_id, name)


def test_steps_that_do_not_apply_never_take_a_worker_slot(sc: Scenario) -> None:
    """Issue 17: the escalation steps of a batch decided at the first step (and, once it is rejected or expired,
    its confirmation and posting) are skipped without being started: no worker ever ran them (no hostname)."""
    assert sc.server.wait_run(DAG_ID, sc.run_id, timeout=120) == "success"
    with sc.server.client() as c:
        tis = ok_json(c.get(f"/dags/{DAG_ID}/dagRuns/{sc.run_id}/taskInstances", params={"limit": 1000}))
    # A task that never ran has no rendered label: the batch's map index is read from its first step, which runs.
    index = {t["rendered_map_index"]: t["map_index"] for t in tis["task_instances"] if t["task_id"] == "batch.approve"}
    by_index = {
        (t["task_id"], t["map_index"]): (t["state"], bool(t["hostname"]))
        for t in tis["task_instances"]
        if t["task_id"].startswith("batch.")
    }
    ran = {(task_id, label): by_index[(task_id, i)] for label, i in index.items() for task_id, j in by_index if j == i}
    escalations = ("batch.approve_escalated_1", "batch.approve_escalated_2")
    moot: dict[str, tuple[str, ...]] = {
        **{name: escalations for name in ("approve", "exclude", "self", "over_limit")},
        **{name: (*escalations, "batch.confirm", "batch.post") for name in ("reject", "timeout")},
        # escalated at the first step: the second step asks (a worker runs it) and expires the batch
        "escalate": ("batch.approve_escalated_2", "batch.confirm", "batch.post"),
    }
    for name, task_ids in moot.items():
        for task_id in task_ids:
            assert ran[(task_id, f"batch {sc.batches[name]}")] == ("skipped", False), (name, task_id)
    assert ran[("batch.approve_escalated_1", f"batch {sc.batches['escalate']}")] == ("success", True)
    for name in ("approve", "exclude", "self", "over_limit"):
        assert ran[("batch.confirm", f"batch {sc.batches[name]}")] == ("success", True), name
