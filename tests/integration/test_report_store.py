"""The reports store (``WRITEOFFS_REPORTS_STORE``): what one worker writes, the workspace serves.

Each test runs on a local ``file://`` store, on fsspec's in-memory store (``memory://``: a store with no local
files at all, reached only through Airflow's ``ObjectStoragePath``) and on S3: ``s3://aws_reports@<bucket>/reports``
through the Amazon provider's filesystem and the Airflow connection ``aws_reports`` (``AIRFLOW_CONN_AWS_REPORTS``),
whose extra ``endpoint_url`` points at moto's S3-compatible HTTP server started by this module
(:class:`tests.receivers.S3Receiver`); what lands in the bucket is read back with boto3 of its own. The "worker" writes
through the real writers (KPI report and charts, reconciliation report, candidate list, a published Data Docs
site) with its own handle on the store; the "api-server" is the workspace app with a fresh handle, read over HTTP.
The controls attacked first: names that climb out of a folder, the candidate lists' folder, unknown or read-only
schemes, an unreachable store (an S3 endpoint that is down too).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from airflow.api_fastapi.core_api.security import get_user
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import entity
from tests.receivers import S3Receiver
from tests.unit.test_approval_view import WORKED
from writeoffs import report_store
from writeoffs.approval_view import write_candidates_csv
from writeoffs.errors import ConfigError, Unavailable
from writeoffs.kpi import Period, kpi_report, write_report
from writeoffs.kpi_charts import write_report_charts
from writeoffs.reconcile import reconcile
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.run import publish_docs
from writeoffs_airflow.storage import docs_store, reports_root
from writeoffs_airflow.workspace import reports
from writeoffs_airflow.workspace.app import create_app

NOV = Period.month(2026, 11)
#: The Airflow connection the S3 store is reached with, as docs/deploy.md names it.
S3_CONN = "aws_reports"


class FakeUser:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


def forget_s3_filesystems() -> None:
    """Drop the S3 filesystems this process has opened, as a new process would start without them.

    Airflow's ``attach`` keeps one store per scheme and connection id for the life of the process
    (``airflow.sdk.io.store._STORE_CACHE``, key ``s3-aws_reports``), built from the connection when first used:
    its ``endpoint_url`` stays in it. Kept, the next test (another server, a stopped one) would reach the old
    endpoint. ``memory://`` needs none of this: its filesystem is one process-wide dict, and each test has its
    own bucket name. There is no public call to forget a store, hence the private dict. s3fs also caches its
    instances; cleared too, so nothing of one test's S3 session is reused by the next.
    """
    from airflow.sdk.io import store as airflow_store
    from s3fs import S3FileSystem

    for alias in [a for a in airflow_store._STORE_CACHE if a.split("-", 1)[0] in ("s3", "s3a", "s3n")]:
        del airflow_store._STORE_CACHE[alias]
    S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Receiver]:
    """moto's S3 server for the module's S3 tests (started on first use); each test gets a bucket of its own."""
    with S3Receiver() as s3:
        yield s3


@pytest.fixture
def s3_env(monkeypatch) -> Iterator[None]:
    """No S3 filesystem of an earlier test, and none left behind; only the connection's credentials count."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    forget_s3_filesystems()
    yield
    forget_s3_filesystems()


@pytest.fixture(params=["file", "memory", "s3"])
def store(request, tmp_path: Path, monkeypatch) -> str:
    """The store URL, set for the test; the data folder is elsewhere, so nothing is found there by accident."""
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    if request.param == "file":
        url = (tmp_path / "shared" / "reports").as_uri()
    elif request.param == "memory":
        url = f"memory://writeoffs-{uuid.uuid4().hex}/reports"
    else:
        s3 = request.getfixturevalue("s3_server")
        request.getfixturevalue("s3_env")
        monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN.upper()}", s3.airflow_conn())
        url = f"s3://{S3_CONN}@{s3.new_bucket()}/reports"
    monkeypatch.setenv(report_store.ENV, url)
    return url


def bucket_of(store: str) -> str:
    return store.removeprefix(f"s3://{S3_CONN}@").split("/")[0]


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


def test_what_a_worker_writes_the_workspace_serves(request, store: str, engine: Engine, tmp_path: Path) -> None:
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
    if store.startswith("s3://"):
        # Locations in task results and run records name the bucket, never the connection.
        plain = store.replace(f"{S3_CONN}@", "")
        assert files.summary()["markdown"] == f"{plain}/kpi/2026-11.md"
        assert recon.summary()["report_path"].startswith(f"{plain}/reconciliation/")
        assert S3_CONN not in str(files.summary()) + str(recon.summary())
        forget_s3_filesystems()  # the api-server is another process: it opens S3 from the connection itself
    if not store.startswith("file://"):
        assert not [p for p in tmp_path.rglob("*") if p.name in ("2026-11.md", csv_path.name)]  # no local copy

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

    if store.startswith("s3://"):
        # Really in the bucket: read back with boto3 of its own from the S3 server, not through Airflow or s3fs.
        s3 = request.getfixturevalue("s3_server")
        bucket = bucket_of(store)
        keys = s3.keys(bucket)
        expected = {"reports/kpi/2026-11.md", "reports/kpi/2026-11.json", "reports/kpi/2026-11-tax-listing.csv"}
        expected |= {f"reports/kpi/{p.name}" for p in charts}
        expected |= {f"reports/reconciliation/{recon.report_path.name}", f"reports/batches/{csv_path.name}"}
        assert expected <= set(keys), keys
        assert all(k.startswith("reports/") for k in keys)
        assert s3.read(bucket, "reports/kpi/2026-11.md").decode("utf-8") == md.text
        assert s3.read(bucket, f"reports/kpi/{png.name}") == got.content
        assert s3.read(bucket, f"reports/batches/{csv_path.name}").startswith(b"batch_id,")


def test_data_docs_built_locally_are_published_and_served(request, store: str, engine: Engine, tmp_path: Path) -> None:
    built = tmp_path / "gx-build"
    cfg = ValidationConfig(reports_dir=str(built))
    site = built / "2026-11-24" / "run-1"
    page = site / "validations" / "invoices" / "run-1" / "20261124T010203.000000Z" / "batch.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html>invoices result</html>")
    (site / "index.html").write_text("<html>index</html>")
    (site / "notes.txt").write_text("not a Data Docs type")

    if store.startswith("s3://"):
        # An Airflow connection is read on the Airflow side only: the DAG passes docs_store(), as here.
        publish_docs(site, cfg, docs_store())
    else:
        publish_docs(site, cfg, None)  # None: the configured store, opened by the library itself

    c = client_for(engine)
    listing = c.get("/validation").text
    assert "2026-11-24/run-1" in listing and "invoices" in listing
    got = c.get("/writeoffs/validation/files/2026-11-24/run-1/index.html".removeprefix("/writeoffs"))
    assert got.status_code == 200 and got.text == "<html>index</html>"
    rel = "2026-11-24/run-1/validations/invoices/run-1/20261124T010203.000000Z/batch.html"
    assert c.get(f"/validation/files/{rel}").text == "<html>invoices result</html>"
    assert c.get("/validation/files/2026-11-24/run-1/notes.txt").status_code == 404
    if store.startswith("s3://"):
        published = request.getfixturevalue("s3_server").keys(bucket_of(store), "reports/validation/")
        assert {"reports/validation/2026-11-24/run-1/index.html", f"reports/validation/{rel}"} <= set(published)


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


@pytest.mark.parametrize(
    ("down", "retries"),
    [
        ("stopped", 1),
        ("never started", 1),
        # botocore's default retries: about 35 s before the store is reported (measured), so marked slow.
        pytest.param("never started", None, marks=pytest.mark.slow, id="never started-default retries"),
    ],
)
def test_an_s3_store_whose_endpoint_is_down_is_unavailable(
    down: str, retries: int | None, s3_env: None, monkeypatch, tmp_path: Path
) -> None:
    """Fail closed on S3: the connection's endpoint does not answer (its server stopped, or nothing ever listened
    on that port). One line naming the bucket, never the connection or its keys; nothing on the local disk.
    ``retries``: the connection extra ``config_kwargs`` (botocore's ``Config``) that bounds how long it tries."""
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    extra = {"config_kwargs": {"retries": {"max_attempts": retries}}} if retries else {}
    conn = f"AIRFLOW_CONN_{S3_CONN.upper()}"
    with S3Receiver() as s3:
        bucket = s3.new_bucket()
        monkeypatch.setenv(report_store.ENV, f"s3://{S3_CONN}@{bucket}/reports")
        if down == "stopped":
            monkeypatch.setenv(conn, s3.airflow_conn(**extra))
            (reports_root() / "kpi" / "before.md").write_text("written while the store answered")
            assert s3.keys(bucket) == ["reports/kpi/before.md"]
        else:
            monkeypatch.setenv(conn, s3.airflow_conn("http://127.0.0.1:1", **extra))
    forget_s3_filesystems()  # a worker starting now: it opens the store from the connection

    with pytest.raises(Unavailable) as raised:
        reports_root()
    message = str(raised.value)
    assert message.startswith(f"reports store s3://{bucket}/reports cannot be reached: "), message
    assert "\n" not in message
    assert S3_CONN not in message and S3Receiver.KEY not in message
    assert not (tmp_path / "data" / "reports").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name == "before.md"]
