"""Validation Data Docs: a rebuild keeps every batch's pages, the HTML works offline, the workspace serves it.

Real GX runs on a real (SQLite) ledger; the site is the same on PostgreSQL (GX renders results, not SQL).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests import factories
from tests.integration._validation_data import AS_OF, activity_row, invoice_row, payment_row, stage
from writeoffs.validation.run import validate_batches
from writeoffs_airflow.workspace.app import create_app

#: An absolute URL to any host (the pages are served by the api-server itself: none is needed).
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", re.IGNORECASE)


class User:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


def _batch(conn, source: str) -> int:
    inv = [invoice_row(i) for i in range(1, 4)]
    for row in inv:
        row["invoice_ref"] = f"{source}-{row['invoice_ref']}"
    return stage(
        conn,
        invoices=inv,
        payments=[payment_row(1)],
        activities=[activity_row(1, activity_type="agency_placement", end_date=AS_OF)],
        source=source,
    )


@pytest.fixture
def two_runs(make_ledger, tmp_path, monkeypatch) -> tuple[Engine, list[Path]]:
    """Two validation runs of two batches under the same business date and run key (the second rebuilds the
    first's site, as a cleared DAG run or the aging validation of the same run does)."""
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    return _two_runs(make_ledger)


def _two_runs(make_ledger) -> tuple[Engine, list[Path]]:
    ledger = make_ledger("sqlite")
    with ledger.begin() as conn:
        factories.entity(conn)
        first = _batch(conn, "erp")
    validate_batches(ledger, [first], as_of=AS_OF, run_key="ingest-1")
    with ledger.begin() as conn:
        second = _batch(conn, "crm")
    validate_batches(ledger, [second], as_of=AS_OF, run_key="ingest-1")
    with ledger.connect() as conn:
        pages = conn.execute(
            text("SELECT report_path FROM validation_runs WHERE suite = 'invoices' ORDER BY id")
        ).scalars()
        paths = [Path(str(p).removeprefix("file://")) for p in pages]
    return ledger, paths


@pytest.mark.slow
def test_a_rebuild_keeps_every_batchs_page_offline_and_the_workspace_serves_them(two_runs) -> None:
    """Attack on completeness: the second build into the same site deleted the first batch's page (GX's index
    clean-up). And offline: no script, no URL of any host, served only to who may read reports."""
    ledger, pages = two_runs
    assert len(pages) == 2 and pages[0] != pages[1]
    assert all(p.is_file() for p in pages), [str(p) for p in pages if not p.is_file()]
    root = Path(os.environ["WRITEOFFS_DATA_DIR"]) / "reports" / "validation"
    html = list(root.rglob("*.html"))
    assert len(html) >= 3  # both pages and the index
    for p in html:
        found = EXTERNAL.findall(p.read_text(encoding="utf-8"))
        assert not found, (p.name, found[:5])
        assert "<script" not in p.read_text(encoding="utf-8").lower()
    _served_behind_airflows_login(ledger, pages)


def _served_behind_airflows_login(ledger: Engine, pages: list[Path]) -> None:
    app = create_app(engine_factory=lambda: ledger, reader_names=frozenset({"auditor"}))
    client = TestClient(app, root_path="/writeoffs")
    assert client.get("/validation").status_code == 401
    app.dependency_overrides[get_user] = lambda: User("outsider")
    assert client.get("/validation").status_code == 403
    app.dependency_overrides[get_user] = lambda: User("auditor")
    listing = client.get("/validation")
    assert listing.status_code == 200
    links = re.findall(r'class="docs-link[^"]*" href="([^"]+)"', listing.text)
    for page in pages:  # both batches' pages are listed and served
        match = [h for h in links if h.endswith(page.name)]
        assert match, page.name
        r = client.get(match[0].removeprefix("/writeoffs"))
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "invoices" in r.text and not EXTERNAL.findall(r.text)
        assert "script-src" not in r.headers["content-security-policy"]  # no script runs
    index = [h for h in links if h.endswith("/index.html")]
    assert index and client.get(index[0].removeprefix("/writeoffs")).status_code == 200
    app.dependency_overrides.pop(get_user)
    assert client.get(links[0].removeprefix("/writeoffs")).status_code == 401
    app.dependency_overrides[get_user] = lambda: User("auditor")
    for bad in ("/validation/files/../../../etc/passwd", "/validation/files/%2e%2e/x.html", "/validation/files/a.py"):
        assert client.get(bad).status_code == 404, bad


@pytest.mark.slow
def test_with_a_reports_store_the_sites_are_published_there_and_served_from_there(
    make_ledger, tmp_path, monkeypatch
) -> None:
    """``WRITEOFFS_REPORTS_STORE`` set (fsspec's in-memory store standing in for S3): GX still builds on the
    worker's disk, the run publishes the site to ``<store>/validation``, and the workspace serves it from there,
    also once the worker's build folder is gone (another machine)."""
    import shutil
    import uuid

    from writeoffs_airflow.storage import reports_root

    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WRITEOFFS_REPORTS_STORE", f"memory://docs-{uuid.uuid4().hex}/reports")
    ledger, pages = _two_runs(make_ledger)
    shutil.rmtree(tmp_path / "data" / "reports" / "validation")
    published = reports_root() / "validation"
    assert {p.name for p in published.rglob("*.html")} >= {pages[0].name, pages[1].name, "index.html"}
    _served_behind_airflows_login(ledger, pages)
