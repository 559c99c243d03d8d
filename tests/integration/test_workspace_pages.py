"""The workspace app's pages on a real ledger (SQLite and PostgreSQL), through FastAPI's TestClient.

Authentication is Airflow's ``get_user`` dependency; here it is overridden with a fixed user *only* to render pages
as that user (the real JWT path is covered by test_workspace_airflow.py against a real api-server). Without the
override and without a token the app answers 401, which is Airflow's own dependency at work.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, update

from tests.factories import entity
from tests.integration.approval_support import make_batch
from writeoffs.db.schema import customers, invoices, recon_breaks, recon_runs, writeoff_batches, writeoffs
from writeoffs_airflow.workspace.app import create_app

EVIL_NAME = '=HYPERLINK("http://evil.example","pay")<script>alert(1)</script>'
EVIL_REF = "@SUM(A1)<img src=x onerror=alert(1)>"


class FakeUser:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


@pytest.fixture
def ws(ledger: Engine):
    """Batches under the test tiers (ar_manager tier: approvers ar_manager and controller)."""
    with ledger.begin() as conn:
        entity(conn)
        open_id, refs = make_batch(conn, ["120.00", "80.50", "4000.00", "15.25"], tier="ar_manager", prefix="open")
        own_id, _ = make_batch(conn, ["50.00"], tier="ar_manager", prepared_by="ar_manager", prefix="own")
        cfo_id, _ = make_batch(conn, ["60000.00"], tier="cfo", prefix="cfo")
        posted_id, _ = make_batch(conn, ["10.00"], tier="ar_manager", prefix="done")
        conn.execute(update(writeoff_batches).where(writeoff_batches.c.id == posted_id).values(status="posted"))
        # Hostile source data on one item of the open batch: a formula and markup in the customer and invoice.
        inv = conn.execute(
            update(invoices)
            .where(invoices.c.invoice_ref == refs[3])
            .values(invoice_ref=EVIL_REF)
            .returning(invoices.c.customer_id)
        ).scalar_one()
        conn.execute(update(customers).where(customers.c.id == inv).values(name=EVIL_NAME))
        conn.execute(
            update(writeoffs)
            .where(writeoffs.c.batch_id == open_id, writeoffs.c.amount == Decimal("80.50"))
            .values(reason_code="bankruptcy", rule="bankruptcy_filed")
        )
    app = create_app(engine_factory=lambda: ledger, required_action=lambda b: f"http://airflow.test/ra/{b.id}")
    client = TestClient(app, root_path="/writeoffs")

    def as_user(name: str | None) -> TestClient:
        if name is None:
            app.dependency_overrides.pop(get_user, None)
        else:
            app.dependency_overrides[get_user] = lambda: FakeUser(name)
        return client

    as_user.ids = {"open": open_id, "own": own_id, "cfo": cfo_id, "posted": posted_id}  # type: ignore[attr-defined]
    as_user.engine = ledger  # type: ignore[attr-defined]
    return as_user


def ids_in(html: str, table_id: str) -> list[str]:
    """The data-batch-id of the rows of one table."""
    body = html.split(f'<table id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'data-batch-id="(\d+)"', body)


def rows_of(html: str, table_id: str) -> list[str]:
    body = html.split(f'<table id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr[^>]*data-[^>]*>.*?</tr>", body)


def test_no_token_is_401_from_airflows_dependency(ws) -> None:
    c = ws(None)
    for path in ("/queue", f"/batches/{ws.ids['open']}", f"/batches/{ws.ids['open']}/candidates.csv", "/kpis"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert 'id="login-link"' in r.text and "INV-" not in r.text


def test_queue_lists_only_batches_the_ledger_lets_the_user_answer(ws) -> None:
    from writeoffs import audit
    from writeoffs.tiers import SYSTEM_ACTOR

    with ws.engine.begin() as conn:  # what the approval operator records when it opens the request
        for deadline in ("2026-11-25T09:00:00+00:00", "2026-11-26T14:00:00+00:00"):  # a re-opened request: latest
            audit.append(
                conn,
                actor=SYSTEM_ACTOR,
                action="approval.requested.approve",
                object_type="writeoff_batch",
                object_id=ws.ids["open"],
                details={"tier": "ar_manager", "deadline": deadline},
            )
    r = ws("ar_manager").get("/queue")
    assert r.status_code == 200
    ids = ids_in(r.text, "queue")
    # Not the batch they prepared (nobody approves their own), not the CFO's tier, not the posted one.
    assert ids == [str(ws.ids["open"])]
    # What they may look at besides: the open one and the decided batch of their tier, newest first.
    assert ids_in(r.text, "recent-batches") == [str(ws.ids["posted"]), str(ws.ids["open"])]
    assert "4,215.75 USD" in r.text and ">4<" in r.text  # total and count of the items in play
    assert "2026-11-26 14:00 UTC" in r.text and "2026-11-25" not in r.text
    assert ids_in(ws("cfo").get("/queue").text, "queue") == [str(ws.ids["cfo"])]
    assert ws("controller").get("/queue").status_code == 200
    assert ws("outsider").get("/queue").status_code == 403


#: (user, batch, status) of the batch page and its CSV.
ACCESS = [
    ("ar_manager", "open", 200),
    ("controller", "open", 200),  # also an approver of the ar_manager tier in the test policy
    ("cfo", "open", 403),  # not assigned to that tier
    ("outsider", "open", 403),
    ("preparer", "open", 403),  # prepared it: may not answer, so does not see it
    ("ar_manager", "own", 403),  # their own batch: the ledger bars them
    ("controller", "own", 200),
    ("ar_manager", "cfo", 403),
    ("cfo", "cfo", 200),
    ("ar_manager", "posted", 200),  # decided: visible to the tier's people
    ("cfo", "posted", 403),
]


def test_batch_page_access(ws) -> None:
    got = []
    for user, batch, _ in ACCESS:
        bid = ws.ids[batch]
        page, csv_ = ws(user).get(f"/batches/{bid}").status_code, ws(user).get(f"/batches/{bid}/candidates.csv")
        got.append((user, batch, page if page == csv_.status_code else (page, csv_.status_code)))
    assert got == ACCESS


def test_unknown_batch_is_404_and_readers_see_everything(ws, monkeypatch) -> None:
    for missing in ("999999", str(2**70), "0", "-3"):
        assert ws("ar_manager").get(f"/batches/{missing}").status_code == 404, missing
    monkeypatch.setenv("WRITEOFFS_WORKSPACE_READERS", "auditor, Someone")
    assert ws("auditor").get(f"/batches/{ws.ids['cfo']}").status_code == 200
    assert ws("AUDITOR").get("/reconciliation").status_code == 200
    queue = ws("auditor").get("/queue")
    assert queue.status_code == 200 and ids_in(queue.text, "queue") == []  # nothing to answer, but may look:
    assert sorted(ids_in(queue.text, "recent-batches")) == sorted(str(i) for i in ws.ids.values())


def test_batch_page_items_sorted_paged_filtered_and_escaped(ws) -> None:
    c = ws("ar_manager")
    bid = ws.ids["open"]
    r = c.get(f"/batches/{bid}")
    assert r.status_code == 200
    html = r.text
    assert "<script" not in html and "<img" not in html
    assert "=HYPERLINK(&quot;http://evil.example&quot;,&quot;pay&quot;)&lt;… (64 chars)" in html  # cut, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'class="csv-download"' in html and f'href="/writeoffs/batches/{bid}/candidates.csv"' in html
    assert f'href="http://airflow.test/ra/{bid}"' in html and 'id="required-action"' in html
    amounts = [Decimal(a.replace(",", "")) for a in re.findall(r'<td class="num">([\d,]+\.\d\d) USD</td>', html)]
    assert amounts == sorted(amounts, reverse=True) and len(amounts) == 4
    assert "bankruptcy" in html.lower() and "uncollectible" in html.lower()

    # The column headers sort: amount is the current key (descending), so its link flips the order.
    assert re.search(r'<a class="sort" id="sort-amount"[^>]*href="[^"]*sort=amount&amp;dir=asc', html)
    assert re.search(r'<a class="sort" id="sort-days_past_due"[^>]*href="[^"]*sort=days_past_due&amp;dir=desc', html)
    asc = c.get(f"/batches/{bid}", params={"sort": "amount", "dir": "asc", "size": 25}).text
    got = [Decimal(a.replace(",", "")) for a in re.findall(r'<td class="num">([\d,]+\.\d\d) USD</td>', asc)]
    assert got == sorted(got)

    only = c.get(f"/batches/{bid}", params={"reason": "bankruptcy"}).text
    assert len(rows_of(only, "items")) == 1 and 'data-matching="1"' in only

    # Paging: 4 items, 25 per page -> one page; a page beyond the end is empty, not an error.
    assert 'data-pages="1"' in html
    beyond = c.get(f"/batches/{bid}", params={"page": 3}).text
    assert rows_of(beyond, "items") == [] and "No items match." in beyond
    # Hostile parameters are clamped, not echoed into SQL or HTML.
    weird = c.get(f"/batches/{bid}", params={"sort": "amount;drop table", "size": 10**9, "reason": "<x>" * 100})
    assert weird.status_code == 200 and "<x>" not in weird.text


def test_days_past_due_sort(ws) -> None:
    html = ws("ar_manager").get(f"/batches/{ws.ids['open']}", params={"sort": "days_past_due", "dir": "desc"}).text
    # make_batch gives item k 400 + 10k days past due: descending means the last invoice first.
    dpd = [int(x) for x in re.findall(r'<td class="num">(4\d\d)</td>', html)]
    assert dpd == sorted(dpd, reverse=True) and len(dpd) == 4


def test_csv_download_is_complete_and_formulas_are_neutralised(ws) -> None:
    r = ws("controller").get(f"/batches/{ws.ids['open']}/candidates.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4
    evil = next(x for x in rows if "SUM" in x["invoice_ref"])
    assert evil["invoice_ref"] == "'" + EVIL_REF and evil["customer_name"] == "'" + EVIL_NAME
    assert sorted(Decimal(x["amount"]) for x in rows) == [
        Decimal("15.25"),
        Decimal("80.5"),
        Decimal(120),
        Decimal(4000),
    ]
    assert {x["reason_code"] for x in rows} == {"uncollectible_after_collections", "bankruptcy"}


def test_security_headers(ws) -> None:
    r = ws("ar_manager").get("/queue")
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<script" not in r.text and "http://" not in r.text.split("</style>", 1)[1].replace(
        "http://airflow.test", ""
    )


def test_trail_and_reconciliation_pages(ws) -> None:
    c = ws("controller")
    r = c.get("/trail", params={"invoice": EVIL_REF})
    assert r.status_code == 200 and 'id="trail"' in r.text
    assert "&lt;img src=x" in r.text and "<img" not in r.text
    assert "write-off #" in r.text
    assert "no invoice" in c.get("/trail", params={"invoice": "nope"}).text
    assert ws("outsider").get("/trail", params={"invoice": EVIL_REF}).status_code == 403

    c = ws("controller")
    assert 'id="recon-none"' in c.get("/reconciliation").text
    with ws.engine.begin() as conn:
        run = conn.execute(
            insert(recon_runs)
            .values(run_key="r1", as_of_date=ws_date(), checks_run=3, break_count=1)
            .returning(recon_runs.c.id)
        ).scalar_one()
        conn.execute(
            insert(recon_breaks).values(
                run_id=run, check_name="subledger_vs_gl", entity_code="US01", currency="USD",
                expected=Decimal(10), actual=Decimal(12), difference=Decimal(2), message="<b>off</b> by 2",
            )
        )  # fmt: skip
    page = c.get("/reconciliation").text
    assert 'id="recon-breaks"' in page and "&lt;b&gt;off&lt;/b&gt; by 2" in page
    assert len(re.findall(r"<tr>", page.split('id="recon-pairs"', 1)[1].split("</table>", 1)[0])) == 2


def _disable_audit_guard(conn) -> None:
    """What an insider holding the database does first (as in test_ledger_tamper / test_audit_anchor)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER trg_audit_no_update")
    else:
        conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER trg_audit_guard")


def test_trail_shows_the_audit_chain_and_an_edited_row_breaks_it(ws) -> None:
    """Attack: one of the invoice's audit rows is edited with raw SQL after reconciliation verified the chain; the
    trail page (which reuses that run's verdict and verifies the invoice's own rows now) shows it broken there."""
    from writeoffs import audit
    from writeoffs.reconcile import CHECKS, reconcile

    with ws.engine.begin() as conn:
        audit.append(conn, actor="someone", action="test.other", object_type="thing", object_id=1, details={})
    for action in ("approval.requested.approve", "approval.reminded"):
        with ws.engine.begin() as conn:
            audit.append(conn, actor="scheduler", action=action, object_type="writeoff_batch",
                         object_id=ws.ids["open"], details={"tier": "ar_manager"})  # fmt: skip
    chain_only = [c for c in CHECKS if c.name == "audit_chain"]
    result = reconcile(ws.engine, ws_date(), run_key="chain-1", checks=chain_only, write_report=False)
    assert result.break_count == 0
    with ws.engine.begin() as conn:  # after the run: verified by the page itself
        audit.append(conn, actor="someone", action="test.later", object_type="thing", object_id=2, details={})
    with ws.engine.connect() as conn:
        own = [int(i) for i in conn.exec_driver_sql(
            f"SELECT id FROM audit_log WHERE object_type = 'writeoff_batch' AND object_id = '{ws.ids['open']}'"
            " ORDER BY id").scalars()]  # fmt: skip
        head = conn.exec_driver_sql("SELECT max(id) FROM audit_log").scalar()
    c = ws("controller")
    page = c.get("/trail", params={"invoice": "INV-open-1"}).text
    assert 'data-state="intact"' in page and f"audit chain intact up to row {head}, anchored at row {head}" in page
    assert "reconciliation run chain-1" in page and "this invoice&#x27;s 2 audit row(s)" in page
    assert re.findall(r'data-audit-row="(\d+)"', page) == [str(i) for i in own]

    with ws.engine.begin() as conn:
        _disable_audit_guard(conn)
        conn.exec_driver_sql(f"UPDATE audit_log SET actor = 'mallory' WHERE id = {own[0]}")
    page = c.get("/trail", params={"invoice": "INV-open-1"}).text
    assert 'data-state="broken"' in page and f'data-broken-at="{own[0]}"' in page
    assert f"audit chain BROKEN at row {own[0]}" in page and 'class="bad">broken here' in page


def ws_date():
    from tests.integration.approval_support import AS_OF

    return AS_OF


def test_kpi_page_shows_the_charts(ws) -> None:
    from writeoffs.aging import compute_aging

    with ws.engine.begin() as conn:
        compute_aging(conn, ws_date())
    c = ws("controller")
    r = c.get("/kpis", params={"period": "2026-11"})
    assert r.status_code == 200
    html = r.text
    for chart in ("chart-writeoff-trend", "chart-rate-of-sales", "chart-rate-of-ar", "chart-by-reason"):
        assert f'<svg xmlns="http://www.w3.org/2000/svg" id="{chart}"' in html, chart
    # Aging bars from the snapshot: the open invoices of the test batches are all 365+ days past due.
    aging = html.split('id="chart-aging-buckets-USD"', 1)[1].split("</svg>", 1)[0]
    values = dict(re.findall(r'data-label="([^"]+)" data-value="([^"]+)"', aging))
    assert Decimal(values["365+"]) == Decimal("64275.75") and Decimal(values["1-30"]) == 0 == Decimal(values["current"])
    # Six months of one entity, nothing posted yet: six points at zero.
    points = re.findall(r'<circle class="point"[^>]*data-value="([^"]+)"', html)
    assert len(points) == 6 and {Decimal(v) for v in points} == {Decimal(0)}
    svg = c.get("/kpis/charts/aging-buckets-USD.svg", params={"period": "2026-11"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg") and 'class="bar"' in svg.text
    assert c.get("/kpis/charts/nope.svg").status_code == 404
    assert c.get("/kpis", params={"period": "2026-13<script>"}).status_code == 200  # falls back to the default month
    assert ws("outsider").get("/kpis").status_code == 403


def test_after_approval_only_the_second_person_sees_the_confirm_step(ws) -> None:
    from tests.integration.approval_support import TEST_TIERS
    from writeoffs.approvals import governing_tiers, record_decision

    with ws.engine.begin() as conn:
        bid, _ = make_batch(conn, ["1500.00", "2715.75"], tier="ar_manager", prefix="four-eyes")
    with ws.engine.begin() as conn:
        tiers = governing_tiers(conn, bid)
        assert [t["name"] for t in TEST_TIERS] == [t.name for t in tiers if t.name != "auto"]
        record_decision(conn, batch_id=bid, step="approve", approver="ar_manager", decision="approved", tiers=tiers)
    # 4,215.75 USD is above the tier's four-eyes amount (1,000 USD): the approver may not confirm, so does not see it.
    assert ws("ar_manager").get(f"/batches/{bid}").status_code == 403
    assert str(bid) not in ids_in(ws("ar_manager").get("/queue").text, "queue")
    page = ws("controller").get(f"/batches/{bid}")
    assert page.status_code == 200 and '<span id="batch-status">approved</span>' in page.text
    queue = ws("controller").get("/queue").text
    row = re.search(rf'<tr data-batch-id="{bid}"[^>]*>(.*?)</tr>', queue)
    assert row and '<td class="">confirm</td>' in row.group(1)


def test_report_files_are_served_from_two_folders_only(ws, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))
    reports = tmp_path / "reports"
    for rel, content in {
        "kpi/2026-11.md": "# KPIs <script>",
        "kpi/2026-11-rate-of-ar.svg": "<svg/>",
        "kpi/2026-11-tax-listing.csv": "a,b\n",
        "kpi/notes.html": "<script>alert(1)</script>",  # not a servable type
        "reconciliation/2026-11-24-run.md": "breaks",
        "batches/batch_1_x.csv": "every item of a batch",  # the batch page's own check applies
    }.items():
        (reports / rel).parent.mkdir(parents=True, exist_ok=True)
        (reports / rel).write_text(content)
    (tmp_path / "secret.md").write_text("outside")
    (reports / "kpi" / "link.md").symlink_to(tmp_path / "secret.md")

    c = ws("controller")
    listing = c.get("/reports").text
    names = re.findall(r'<a class="report-link" href="/writeoffs/reports/([^"]+)"', listing)
    assert sorted(names) == sorted(
        [
            "kpi/2026-11.md",
            "kpi/2026-11-rate-of-ar.svg",
            "kpi/2026-11-tax-listing.csv",
            "reconciliation/2026-11-24-run.md",
        ]
    )
    md = c.get("/reports/kpi/2026-11.md")
    assert (
        md.status_code == 200 and md.headers["content-type"].startswith("text/plain") and md.text == "# KPIs <script>"
    )
    assert "attachment" in c.get("/reports/kpi/2026-11-tax-listing.csv").headers["content-disposition"]
    assert c.get("/reports/kpi/2026-11-rate-of-ar.svg").headers["content-type"].startswith("image/svg+xml")
    for bad in ("kpi/notes.html", "batches/batch_1_x.csv", "kpi/link.md", "kpi/..%2F..%2Fsecret.md", "kpi/.hidden.md"):
        assert c.get(f"/reports/{bad}").status_code == 404, bad
    assert ws("outsider").get("/reports").status_code == 403
    assert ws("outsider").get("/reports/kpi/2026-11.md").status_code == 403


def test_only_who_may_approve_now_gets_checkboxes_and_the_answer_form(ws) -> None:
    bid = ws.ids["open"]
    mine = ws("ar_manager").get(f"/batches/{bid}").text
    assert 'id="answer-form"' in mine and mine.count('data-testid="exclude-box"') == 4
    assert 'value="INV-open-1"' in mine  # each box carries its invoice ref (escaped like every cell)
    assert "<img src=x" not in mine
    # a reader may look but not answer; a decided batch offers nothing to answer
    for user, batch in (("controller", "posted"), ("ar_manager", "posted")):
        page = ws(user).get(f"/batches/{ws.ids[batch]}").text
        assert 'id="answer-form"' not in page and "exclude-box" not in page


def test_an_answer_from_another_site_is_refused_before_anything_is_sent(ws) -> None:
    bid = ws.ids["open"]
    c = ws("ar_manager")
    form = {"decision": "approve", "exclude": ["INV-open-1"], "comment": "x"}
    cross_site = ({}, {"origin": "https://evil.example"}, {"referer": "https://evil.example/p"}, {"origin": "null"})
    for headers in cross_site:
        r = c.post(f"/batches/{bid}/answer", data=form, headers=headers)
        assert r.status_code == 403 and "own pages only" in r.text, headers
    # same origin, but nobody else may answer through the workspace either: the batch is not theirs
    r = ws("cfo").post(f"/batches/{bid}/answer", data=form, headers={"origin": "http://testserver"})
    assert r.status_code == 403
    # same origin, entitled, but no open request in Airflow (none runs here): refused, nothing recorded
    r = ws("ar_manager").post(f"/batches/{bid}/answer", data=form, headers={"origin": "http://testserver"})
    assert r.status_code == 409 and "no open approval request" in r.text, r.text[-600:]
    with ws.engine.connect() as conn:
        from writeoffs.db.schema import approvals

        assert conn.execute(select(approvals.c.id).where(approvals.c.batch_id == bid)).first() is None


# --- the sub-ledger page (issue 19): balance of X as of D, what changed between D1 and D2 ---------------------------

EVIL_CUSTOMER = "=cmd|' /C calc'!A0<script>alert(1)</script>"
SL_EARLY = "2026-10-20 08:00:00.000000"  # when the invoices and the first payment "were recorded" (see sub below)
SL_RECORDED = "2026-11-10 18:00:00.000000"


@pytest.fixture
def sub(ws):
    """Two invoices of a hostile customer, raised in October and recorded then; a payment of SL-1 (400.00) effective
    and recorded on 10 November; a payment of SL-2<b> (50.50) effective 12 November but recorded today (late).

    The database's clock writes ``recorded_at`` and a test cannot move it, so the movements that stand for earlier
    days are re-dated with the immutability guard lifted (triggers dropped on SQLite / disabled on PostgreSQL, as
    in the tamper tests); the late payment keeps the clock's own time.
    """
    from datetime import date

    from tests.factories import customer, invoice
    from writeoffs.db.schema import invoice_movements
    from writeoffs.subledger import movement

    with ws.engine.begin() as conn:
        cid = customer(conn, "US01", ref=EVIL_CUSTOMER)
        one = invoice(conn, cid, ref="SL-1", amount="1000.00", invoice_date=date(2026, 10, 1))
        two = invoice(conn, cid, ref="SL-2<b>", amount="250.50", invoice_date=date(2026, 10, 5))
    with ws.engine.begin() as conn, movement(conn, "ingest", date(2026, 11, 10), ref="extract 2026-11-10"):
        conn.execute(update(invoices).where(invoices.c.id == one).values(open_balance=Decimal("600.00")))
    with ws.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER trg_movements_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE invoice_movements DISABLE TRIGGER trg_movements_guard")
        m = invoice_movements.c
        conn.execute(update(invoice_movements).where(m.invoice_id.in_([one, two])).values(recorded_at=SL_EARLY))
        conn.execute(
            update(invoice_movements).where(m.invoice_id == one, m.kind == "ingest").values(recorded_at=SL_RECORDED)
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE invoice_movements ENABLE ALWAYS TRIGGER trg_movements_guard")
    with ws.engine.begin() as conn, movement(conn, "ingest", date(2026, 11, 12), ref="extract 2026-11-12 (late)"):
        conn.execute(update(invoices).where(invoices.c.id == two).values(open_balance=Decimal("200.00")))
    return ws


def section(html: str, table_id: str) -> str:
    """The HTML of one table."""
    return html.split(f'<table id="{table_id}"', 1)[1].split("</table>", 1)[0]


def balances_in(html: str, table_id: str = "subledger-balances") -> dict[str, Decimal]:
    import html as h

    body = section(html, table_id)
    return {h.unescape(k): Decimal(v) for k, v in re.findall(r'data-key="([^"]*)" data-balance="([^"]+)"', body)}


def test_subledger_balances_at_two_dates_and_as_known_on_a_day(sub) -> None:
    c = sub("controller")
    ask = {"level": "invoice", "customer": EVIL_CUSTOMER}
    october = c.get("/subledger", params={**ask, "as_of": "2026-10-31"})
    assert october.status_code == 200
    assert balances_in(october.text) == {"SL-1": Decimal(1000), "SL-2<b>": Decimal("250.50")}
    assert "1,000.00 USD" in october.text and "250.50 USD" in october.text  # exact, with the currency

    # After both payments, as known today: the late one (recorded today, dated 12 November) is in.
    november = c.get("/subledger", params={**ask, "as_of": "2026-11-30"}).text
    assert balances_in(november) == {"SL-1": Decimal(600), "SL-2<b>": Decimal(200)}
    assert "as known today" in november
    # As the ledger knew it at the end of 15 November: the payment recorded on the 10th, not the late one.
    then = c.get("/subledger", params={**ask, "as_of": "2026-11-30", "known_on": "2026-11-15"}).text
    assert balances_in(then) == {"SL-1": Decimal(600), "SL-2<b>": Decimal("250.50")}
    assert "as known at the end of 2026-11-15 (UTC)" in then
    # ... and before the first payment was recorded: neither.
    before = c.get("/subledger", params={**ask, "as_of": "2026-11-30", "known_on": "2026-11-09"}).text
    assert balances_in(before) == {"SL-1": Decimal(1000), "SL-2<b>": Decimal("250.50")}

    # Per customer and per currency the same answer adds up; the entity also holds the batches' older invoices.
    per_customer = c.get("/subledger", params={"as_of": "2026-11-30", "level": "customer", "entity": "US01"}).text
    assert balances_in(per_customer)[EVIL_CUSTOMER] == Decimal(800)
    per_currency = c.get("/subledger", params={"as_of": "2026-11-30", "level": "currency", "currency": "USD"}).text
    assert list(balances_in(per_currency)) == ["USD"]


def test_subledger_changes_between_two_dates_and_the_invoices_movements(sub) -> None:
    c = sub("controller")
    ask = {"from": "2026-10-31", "to": "2026-11-30", "entity": "US01", "customer": EVIL_CUSTOMER}
    page = c.get("/subledger", params=ask).text
    changes = re.findall(r'data-kind="([^"]+)" data-change="([^"]+)"', section(page, "subledger-changes"))
    assert [(k, Decimal(v)) for k, v in changes] == [("ingest", Decimal("-450.50"))]
    assert ">2</td>" in section(page, "subledger-changes")  # two movements, two invoices
    # Both ends per customer (the narrowest level the filters name) and their difference: the changes' sum.
    ends = re.findall(r'data-from="([^"]+)" data-to="([^"]+)"', page)
    assert [(Decimal(a), Decimal(z)) for a, z in ends] == [(Decimal("1250.50"), Decimal(800))]
    assert "-450.50 USD" in page

    known = c.get("/subledger", params={**ask, "known_on": "2026-11-15"}).text
    changes = re.findall(r'data-kind="([^"]+)" data-change="([^"]+)"', section(known, "subledger-changes"))
    assert [(k, Decimal(v)) for k, v in changes] == [("ingest", Decimal(-400))]

    # One invoice: its movements in the window (the opening movement is dated before it), as known.
    one = c.get("/subledger", params={**ask, "invoice": "SL-1"}).text
    movements = section(one, "subledger-movements")
    assert re.findall(r'data-kind="([^"]+)"', movements) == ["ingest"]
    assert "-400.00 USD" in movements and SL_RECORDED in movements and "extract 2026-11-10" in movements
    whole = c.get("/subledger", params={"as_of": "2026-11-30", "entity": "US01", "invoice": "SL-2<b>"}).text
    movements = section(whole, "subledger-movements")
    assert len(re.findall(r"<tr data-kind", movements)) == 2 and "-50.50 USD" in movements
    hidden = c.get(
        "/subledger", params={"as_of": "2026-11-30", "known_on": "2026-11-15", "entity": "US01", "invoice": "SL-2<b>"}
    ).text
    movements = section(hidden, "subledger-movements")
    assert len(re.findall(r"<tr data-kind", movements)) == 1 and "-50.50" not in movements
    # Without the entity the invoice cannot be told apart across entities: the page says what is missing.
    assert 'id="movements-hint"' in c.get("/subledger", params={"as_of": "2026-11-30", "invoice": "SL-1"}).text


def test_subledger_page_access_escaping_and_bad_input(sub, monkeypatch) -> None:
    assert sub(None).get("/subledger").status_code == 401
    for who in ("outsider", ""):
        r = sub(who).get("/subledger", params={"as_of": "2026-11-30"})
        assert r.status_code == 403 and "subledger-balances" not in r.text, who
    monkeypatch.setenv("WRITEOFFS_WORKSPACE_READERS", "auditor")
    assert sub("auditor").get("/subledger", params={"as_of": "2026-11-30"}).status_code == 200
    c = sub("ar_manager")
    empty = c.get("/subledger")
    assert empty.status_code == 200 and 'id="subledger-hint"' in empty.text
    assert 'id="nav-subledger" data-testid="nav-subledger" href="/writeoffs/subledger" class="active"' in empty.text

    # Hostile refs from the ledger and in the query: escaped in cells, attributes and the echoed form.
    page = c.get("/subledger", params={"as_of": "2026-11-30", "level": "customer", "invoice": '"><script>x'}).text
    assert "<script" not in page and "<b>" not in page
    page = c.get("/subledger", params={"as_of": "2026-11-30", "level": "invoice", "customer": EVIL_CUSTOMER}).text
    assert "<script" not in page and "<b>" not in page
    assert "=cmd|&#x27; /C calc&#x27;!A0&lt;script&gt;alert(1)&lt;/script&gt;" in page and "SL-2&lt;b&gt;" in page

    # Fail closed: a clear line on the page with status 400, the form kept, nothing computed, no stack trace.
    bad = {
        ("as_of", "31/03/2026"): "as of &#x27;31/03/2026&#x27; is not a date in the form YYYY-MM-DD",
        ("known_on", "<script>"): "known on &#x27;&lt;script&gt;&#x27; is not a date in the form YYYY-MM-DD",
        ("level", "region"): "level &#x27;region&#x27; is not one of invoice, customer, entity, currency",
        ("from", "2026-11-01"): "what changed needs both dates",
        ("known_on", "9999-12-31"): "known on 9999-12-31 is beyond the last day",
        ("invoice", "SL-1" + "x" * 300): "invoice is longer than 200 characters",  # refused, never cut to a key
    }
    for (name, value), message in bad.items():
        r = c.get("/subledger", params={"as_of": "2026-11-30", name: value})
        assert r.status_code == 400, (name, value)
        assert message in r.text and 'data-status="400"' in r.text and 'id="subledger-form"' in r.text, r.text[-800:]
        assert "Traceback" not in r.text and "subledger-balances" not in r.text and "<script>" not in r.text
    r = c.get("/subledger", params={"from": "2026-11-30", "to": "2026-11-01"})
    assert r.status_code == 400 and "to 2026-11-01 is before from 2026-11-30" in r.text

    # A page never lists a million invoices: the first rows only, and it says so.
    from writeoffs_airflow.workspace import subledger_view

    monkeypatch.setattr(subledger_view, "ROW_LIMIT", 2)
    many = c.get("/subledger", params={"as_of": "2026-11-30", "level": "invoice"}).text
    assert len(balances_in(many)) == 2 and 'id="subledger-more"' in many
