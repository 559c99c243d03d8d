"""The workspace plugin in a real ``airflow api-server``: listed as a plugin, mounted under /writeoffs, authenticated
by Airflow's JWT (bearer or the UI's ``_token`` cookie), authorised by the ledger; a 100,000-item batch's first page
timed over real HTTP.

The ledger is a PostgreSQL schema shared by the test and the api-server (``WRITEOFFS_LEDGER_URL``). Batches: a small
one in the test policy's ``ar_manager`` tier (approvers ar_manager and controller) and a 100,000-item one in the
shipped policy's ``cfo`` tier (bench/bench_workspace.py builds it set-wise).
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from bench.bench_workspace import build as build_big_batch
from scripts.airflow_local import DEFAULT_USERS, start_airflow
from tests.integration.approval_support import make_batch, write_policy
from writeoffs.db.engine import make_engine, schema_url

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.postgres]

PG_URL = os.environ.get("WRITEOFFS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BIG = 100_000


@pytest.fixture(scope="module")
def env(tmp_path_factory, pg_admin, ledger_templates, airflow_metadata_template):
    tmp = tmp_path_factory.mktemp("workspace")
    schema = f"wt_{uuid.uuid4().hex[:12]}"
    ledger_templates.new_pg_schema(schema)  # a clone of the session's migrated ledger
    url = schema_url(PG_URL, schema)
    ledger = make_engine(url)
    big = build_big_batch(ledger, BIG)  # also creates entity US01
    with ledger.begin() as conn:
        small, refs = make_batch(conn, ["1200.00", "800.50"], tier="ar_manager", prefix="ws")
    server = start_airflow(
        metadata_template=airflow_metadata_template,
        dag_files=[],
        users={**DEFAULT_USERS, "auditor": "viewer"},
        env={
            "WRITEOFFS_LEDGER_URL": url,
            "WRITEOFFS_POLICY_PATH": str(write_policy(tmp / "policy.yaml")),
            "WRITEOFFS_DATA_DIR": str(tmp / "data"),
            "WRITEOFFS_WORKSPACE_READERS": "auditor",
        },
    )
    try:
        yield {"server": server, "small": small, "refs": refs, "big": big}
    finally:
        server.stop()
        ledger.dispose()
        with pg_admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def get(env, path: str, user: str | None = None, **kw) -> httpx.Response:
    server = env["server"]
    headers = {"Authorization": f"Bearer {server.token(user)}"} if user else {}
    return httpx.get(f"{server.base_url}/writeoffs{path}", headers=headers, timeout=60, follow_redirects=False, **kw)


def test_plugin_is_listed_with_its_app_and_nav_entry(env) -> None:
    with env["server"].client("admin") as c:
        r = c.get("/plugins")
    assert r.status_code == 200
    (plugin,) = [p for p in r.json()["plugins"] if p["name"] == "writeoffs_workspace"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/writeoffs"]
    (view,) = plugin["external_views"]
    assert view["href"] == "/writeoffs/queue" and view["url_route"] == "writeoffs" and view["destination"] == "nav"


def test_unauthenticated_is_401_and_a_forged_token_is_refused(env) -> None:
    small = env["small"]
    for path in (
        "/queue",
        f"/batches/{small}",
        f"/batches/{small}/candidates.csv",
        "/kpis",
        "/reconciliation",
        "/reports",
    ):
        r = get(env, path)
        assert r.status_code == 401, path
        assert "INV-ws" not in r.text and 'id="login-link"' in r.text
    forged = httpx.get(
        f"{env['server'].base_url}/writeoffs/queue", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30
    )
    assert forged.status_code == 403 and "INV-" not in forged.text  # Airflow's own answer to an invalid token


def test_entitled_approver_sees_the_batch_and_its_csv(env) -> None:
    small = env["small"]
    queue = get(env, "/queue", "ar_manager")
    assert queue.status_code == 200 and f'data-batch-id="{small}"' in queue.text
    assert f'data-batch-id="{env["big"]}"' not in queue.text  # the CFO's batch is not theirs
    page = get(env, f"/batches/{small}", "ar_manager")
    assert page.status_code == 200
    assert all(f'data-invoice-ref="{ref}"' in page.text for ref in env["refs"])
    base = env["server"].base_url
    assert f'href="{base}/required_actions?response_received=false"' in page.text  # not claimed by a run yet
    got = get(env, f"/batches/{small}/candidates.csv", "ar_manager")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert sorted((r["invoice_ref"], r["amount"]) for r in rows) == [
        ("INV-ws-1", "1200.0000"),
        ("INV-ws-2", "800.5000"),
    ]


def test_the_ui_cookie_authenticates_too(env) -> None:
    token = env["server"].token("controller")
    r = httpx.get(f"{env['server'].base_url}/writeoffs/batches/{env['small']}", cookies={"_token": token}, timeout=30)
    assert r.status_code == 200 and 'id="signed-in-user" data-testid="signed-in-user">controller<' in r.text


@pytest.mark.parametrize(("user", "status"), [("cfo", 403), ("outsider", 403), ("preparer", 403), ("auditor", 200)])
def test_others_are_refused_the_batch(env, user: str, status: int) -> None:
    assert get(env, f"/batches/{env['small']}", user).status_code == status
    assert get(env, f"/batches/{env['small']}/candidates.csv", user).status_code == status


def test_outsider_gets_403_everywhere_and_the_auditor_reads(env) -> None:
    for path in ("/queue", "/trail?invoice=INV-ws-1", "/reconciliation", "/kpis", "/reports"):
        assert get(env, path, "outsider").status_code == 403, path
        assert get(env, path, "auditor").status_code == 200, path


def test_first_page_of_a_100k_batch_under_one_second(env) -> None:
    path = f"/batches/{env['big']}"
    first = get(env, path, "cfo")  # warm-up: the app is built on the first request, the engine connects
    assert first.status_code == 200 and 'data-matching="100000"' in first.text
    times = []
    for _ in range(5):
        t = time.perf_counter()
        r = get(env, path, "cfo")
        times.append(time.perf_counter() - t)
        assert r.status_code == 200
    median = statistics.median(times)
    print(f"\n100,000-item batch, first page over HTTP from the api-server: median {median * 1000:.0f} ms of {times}")
    assert median < 1.0
    assert get(env, path, "ar_manager").status_code == 403
