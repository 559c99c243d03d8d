"""The reports store (``WRITEOFFS_REPORTS_STORE``): what one worker writes, the workspace serves.

Each test runs on a local ``file://`` store and on fsspec's in-memory store (``memory://``, standing in for S3: a
store with no local files at all, reached only through Airflow's ``ObjectStoragePath``). The "worker" writes
through the real writers (KPI report and charts, reconciliation report, candidate list, a published Data Docs
site) with its own handle on the store; the "api-server" is the workspace app with a fresh handle, read over HTTP.
The controls attacked first: names that climb out of a folder, the candidate lists' folder, unknown or read-only
schemes, an unreachable store.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import entity
from tests.unit.test_approval_view import WORKED
from writeoffs import report_store
from writeoffs.approval_view import write_candidates_csv
from writeoffs.errors import ConfigError, Unavailable
from writeoffs.kpi import Period, kpi_report, write_report
from writeoffs.kpi_charts import write_report_charts
from writeoffs.reconcile import reconcile
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.run import publish_docs
from writeoffs_airflow.storage import reports_root
from writeoffs_airflow.workspace import reports
from writeoffs_airflow.workspace.app import create_app

NOV = Period.month(2026, 11)


class FakeUser:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path: Path, monkeypatch) -> str:
    """The store URL, set for the test; the data folder is elsewhere, so nothing is found there by accident."""
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    if request.param == "file":
        url = (tmp_path / "shared" / "reports").as_uri()
    else:
        url = f"memory://writeoffs-{uuid.uuid4().hex}/reports"
    monkeypatch.setenv(report_store.ENV, url)
    return url


@pytest.fixture
def engine(make_ledger) -> Engine:
    engine = make_ledger("sqlite")
    with engine.begin() as conn:
        entity(conn)
    return engine


def client_for(engine: Engine, user: str = "controller") -> TestClient:
    app = create_app(engine_factory=lambda: engine, required_action=lambda b: f"http://airflow.test/ra/{b.id}")
    app.dependency_overrides[get_user] = lambda: FakeUser(user)
    return TestClient(app, root_path="/writeoffs")


def test_what_a_worker_writes_the_workspace_serves(store: str, engine: Engine, tmp_path: Path) -> None:
    worker = reports_root()
    with engine.connect() as conn:
        report = kpi_report(conn, NOV.start, NOV.end, previous=True)
    files = write_report(report, reports=worker)
    charts = write_report_charts(engine, report, files.markdown.parent)
    recon = reconcile(engine, date(2026, 11, 24), run_key="store:run", reports=worker)
    csv_path = write_candidates_csv(worker, WORKED)

    # Written to the store, not to the worker's data folder.
    assert not (tmp_path / "data" / "reports").exists()
    assert report_store.location(files.markdown).startswith(report_store.location(worker))
    if store.startswith("memory://"):
        assert files.summary()["markdown"].startswith(store)
        assert recon.summary()["report_path"].startswith(store)

    c = client_for(engine)
    names = {n.split('"')[0] for n in c.get("/reports").text.split('href="/writeoffs/reports/')[1:]}
    assert {"kpi/2026-11.md", "kpi/2026-11.json", "kpi/2026-11-tax-listing.csv"} <= names
    assert {f"kpi/{p.name}" for p in charts} <= names and any(n.endswith(".png") for n in names)
    assert f"reconciliation/{recon.report_path.name}" in names

    md = c.get("/reports/kpi/2026-11.md")
    assert md.status_code == 200 and md.text == files.markdown.read_text(encoding="utf-8")
    png = next(p for p in charts if p.suffix == ".png")
    got = c.get(f"/reports/kpi/{png.name}")
    assert got.headers["content-type"] == "image/png" and got.content == png.read_bytes()
    assert got.content.startswith(b"\x89PNG")
    assert "Reconciliation" in c.get(f"/reports/reconciliation/{recon.report_path.name}").text

    # The candidate list: written to the store, readable by any other process through the same setting, and not
    # served from the reports folder (the batch's own CSV route applies its access check).
    again = reports_root() / "batches" / csv_path.name
    assert again.read_text(encoding="utf-8").splitlines()[0].startswith("batch_id,")
    assert c.get(f"/reports/batches/{csv_path.name}").status_code == 404


def test_data_docs_built_locally_are_published_and_served(store: str, engine: Engine, tmp_path: Path) -> None:
    built = tmp_path / "gx-build"
    cfg = ValidationConfig(reports_dir=str(built))
    site = built / "2026-11-24" / "run-1"
    page = site / "validations" / "invoices" / "run-1" / "20261124T010203.000000Z" / "batch.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html>invoices result</html>")
    (site / "index.html").write_text("<html>index</html>")
    (site / "notes.txt").write_text("not a Data Docs type")

    publish_docs(site, cfg, None)  # None: the configured store

    c = client_for(engine)
    listing = c.get("/validation").text
    assert "2026-11-24/run-1" in listing and "invoices" in listing
    got = c.get("/writeoffs/validation/files/2026-11-24/run-1/index.html".removeprefix("/writeoffs"))
    assert got.status_code == 200 and got.text == "<html>index</html>"
    rel = "2026-11-24/run-1/validations/invoices/run-1/20261124T010203.000000Z/batch.html"
    assert c.get(f"/validation/files/{rel}").text == "<html>invoices result</html>"
    assert c.get("/validation/files/2026-11-24/run-1/notes.txt").status_code == 404


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("kpi", "../reconciliation/x.md"),
        ("kpi", "..%2Fsecret.md"),
        ("kpi", ".hidden.md"),
        ("..", "secret.md"),
        ("batches", "batch_1_x.csv"),
        ("kpi", "x.md/"),
        ("kpi", "x.html"),
    ],
)
def test_the_reader_refuses_names_that_leave_their_folder(store: str, folder: str, name: str) -> None:
    root = reports_root()
    (root / "secret.md").write_text("outside the served folders")
    (root / "batches").mkdir(parents=True, exist_ok=True)
    (root / "batches" / "batch_1_x.csv").write_text("a batch")
    (root / "reconciliation").mkdir(parents=True, exist_ok=True)
    (root / "reconciliation" / "x.md").write_text("fine by its own name")
    (root / "kpi").mkdir(parents=True, exist_ok=True)
    (root / "kpi" / ".hidden.md").write_text("a dot file")
    (root / "kpi" / "x.html").write_text("<script>alert(1)</script>")
    assert reports.resolve(folder, name) is None
    assert reports.resolve("reconciliation", "x.md") is not None  # the control is not refusing everything


@pytest.mark.parametrize(
    "relative",
    ["../secret.html", "a/../../secret.html", "2026-11-24/../../secret.html", "/etc/passwd.html", ".x/index.html"],
)
def test_the_docs_reader_refuses_traversal(store: str, relative: str) -> None:
    (reports_root() / "secret.html").write_text("outside the validation folder")
    assert reports.resolve_docs(relative) is None


def test_http_refuses_traversal_on_both_routes(store: str, engine: Engine) -> None:
    (reports_root() / "secret.md").write_text("outside")
    c = client_for(engine)
    for url in ("/reports/kpi/..%2Fsecret.md", "/reports/..%2F/secret.md", "/validation/files/..%2Fsecret.md"):
        assert c.get(url).status_code == 404, url


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("nosuch://bucket/reports", ConfigError, "unknown storage scheme 'nosuch'"),
        ("https://example.test/reports", ConfigError, "read-only"),
        ("zip://reports.zip", ConfigError, "read-only"),
        ("file://otherhost/reports", ConfigError, "names no host"),
    ],
)
def test_a_bad_setting_is_one_clear_line(monkeypatch, url: str, error: type, words: str) -> None:
    monkeypatch.setenv(report_store.ENV, url)
    for opener in (reports_root, report_store.reports_root):
        with pytest.raises(error) as raised:
            opener()
        message = str(raised.value)
        assert words in message and report_store.ENV in message and "\n" not in message


def test_a_named_connection_without_its_provider_is_refused(monkeypatch) -> None:
    monkeypatch.setenv(report_store.ENV, "memory://reports_conn@bucket/reports")
    with pytest.raises(ConfigError, match="with connection 'reports_conn' needs the Airflow provider"):
        reports_root()


def test_an_unreachable_store_is_unavailable_not_a_local_fallback(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    # A remote store nobody answers for: an FTP server on a closed port (fsspec's built-in FTP filesystem).
    monkeypatch.setenv(report_store.ENV, "ftp://127.0.0.1:1/reports")
    for opener in (reports_root, report_store.reports_root):
        with pytest.raises(Unavailable) as raised:
            opener()
        message = str(raised.value)
        assert message.startswith("reports store ftp://127.0.0.1:1/reports cannot be reached: "), message
        assert "\n" not in message
    assert not (tmp_path / "data" / "reports").exists()


def test_a_password_in_the_url_is_refused_and_not_repeated(monkeypatch) -> None:
    monkeypatch.setenv(report_store.ENV, "ftp://writer:hunter2@127.0.0.1:1/reports")
    for opener in (reports_root, report_store.reports_root):
        with pytest.raises(ConfigError) as raised:
            opener()
        assert "password in the store URL is refused" in str(raised.value)
        assert "hunter2" not in str(raised.value) and "writer" not in str(raised.value)


def test_outside_airflow_a_connection_in_the_url_is_refused_not_misread(monkeypatch) -> None:
    """The CLI has no Airflow connections: ``s3://conn@bucket`` would otherwise reach fsspec as a user or a bucket
    name and the report would go somewhere else."""
    monkeypatch.setenv(report_store.ENV, "memory://reports_conn@bucket/reports")
    with pytest.raises(ConfigError, match="names an Airflow connection"):
        report_store.reports_root()


def test_a_local_store_that_cannot_be_made_is_unavailable(monkeypatch, tmp_path: Path) -> None:
    blocker = tmp_path / "mount"
    blocker.write_text("a file where the shared folder should be (a mount that is not there)")
    monkeypatch.setenv(report_store.ENV, (blocker / "reports").as_uri())
    with pytest.raises(Unavailable, match=r"^reports store file:///.*/mount/reports cannot be reached: "):
        reports_root()
