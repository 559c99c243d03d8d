"""The ``writeoff_kpis`` DAG with ``dag.test()`` in-process: real Airflow (the session's metadata DB), real
PostgreSQL ledger. Run twice for November 2026: the allowance is booked once, the reports are written each time."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from tests import factories as f
from writeoffs import ledger as gl
from writeoffs.aging import compute_aging
from writeoffs.db.schema import allowance_estimates, journal_entries

pytestmark = [pytest.mark.airflow, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MONTH_END = date(2026, 11, 30)


def test_monthly_run_books_the_allowance_once_and_writes_the_reports(
    airflow_db: str, ledger_env, pg_ledger: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    with pg_ledger.begin() as conn:
        f.entity(conn, "EU01", "EUR", "allowance")
        cid = f.customer(conn, "EU01", "C-EU")
        f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="2000.00", days_past_due=400, as_of=MONTH_END)
        f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="10000.00", invoice_date=date(2026, 11, 3))
        compute_aging(conn, MONTH_END)
    ledger_env(pg_ledger)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))

    bag = DagBag(dag_folder=str(ROOT / "dags" / "writeoff_kpis.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["writeoff_kpis"]

    states = [str(dag.test(run_conf={"period": "2026-11"}).state) for _ in range(2)]

    assert states == ["success", "success"]
    with pg_ledger.connect() as conn:
        n_entries = conn.execute(
            select(func.count()).select_from(journal_entries).where(journal_entries.c.source_type == "allowance")
        ).scalar_one()
        n_rows = conn.execute(select(func.count()).select_from(allowance_estimates)).scalar_one()
        reserve = -gl.account_balance(conn, "EU01", "1190", "EUR")
    # 2,000.00 at 90 % (365+) + 10,000.00 not yet due at 0.5 % = 1,800.00 + 50.00
    assert (n_entries, n_rows, reserve) == (1, 8, Decimal("1850.0000"))
    md = tmp_path / "reports" / "kpi" / "2026-11.md"
    assert md.exists() and (tmp_path / "reports" / "kpi" / "2026-11-tax-listing.csv").exists()
    assert "| EU01 | EUR | 0.00 | 10,000.00 | 0.00 % | excellent |" in md.read_text()
    # The charts beside the report: SVG files, one per chart, the aging bars of the month end (from movements).
    charts = {p.name: p.read_text() for p in (tmp_path / "reports" / "kpi").glob("2026-11-*.svg")}
    assert set(charts) == {
        f"2026-11-{c}.svg" for c in ("writeoff-trend", "rate-of-sales", "rate-of-ar", "by-reason", "aging-buckets-EUR")
    }
    assert all("<svg" in t and "</svg>" in t for t in charts.values())
    assert 'data-label="365+" data-value="2000.00"' in charts["2026-11-aging-buckets-EUR.svg"]
    # ... and the same charts as PNG (matplotlib), valid images of the set size, served by the workspace.
    from tests.unit.test_kpi_png import png_size

    pngs = {p.name: p.read_bytes() for p in (tmp_path / "reports" / "kpi").glob("2026-11-*.png")}
    assert set(pngs) == {name.removesuffix(".svg") + ".png" for name in charts}
    assert all(png_size(b) == (800, 450) and len(b) > 5_000 for b in pngs.values())
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from writeoffs_airflow.workspace.app import create_app

    app = create_app(engine_factory=lambda: pg_ledger, reader_names=frozenset({"auditor"}))
    client = TestClient(app, root_path="/writeoffs")
    assert client.get("/reports/kpi/2026-11-writeoff-trend.png").status_code == 401
    app.dependency_overrides[get_user] = lambda: type("U", (), {"get_name": lambda self: "auditor"})()
    served = client.get("/reports/kpi/2026-11-writeoff-trend.png")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content == pngs["2026-11-writeoff-trend.png"]
    assert "2026-11-aging-buckets-EUR.png" in client.get("/reports").text


def test_a_month_end_without_ingest_or_snapshot_reports_and_catches_up_a_missed_month(
    airflow_db: str, ledger_env, pg_ledger: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: nobody aged 31 October or 30 November (no ingest ran on either day) and the October run never
    happened. The scheduled run of 1 December reports October and November from the sub-ledger's movements."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.posting_support import TIERS, approve, make_batch
    from writeoffs.posting import post_batch

    with pg_ledger.begin() as conn:
        f.entity(conn, "EU01", "EUR", "allowance")
        cid = f.customer(conn, "EU01", "C-EU")
        old = f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="2000.00", invoice_date=date(2025, 6, 1))
        f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="10000.00", invoice_date=date(2026, 11, 3))
        f.fund_allowance(conn, "EU01", "EUR", "2000.00", date(2026, 9, 30))
        batch = make_batch(
            conn,
            [(old, "2000.00", "uncollectible_after_collections")],
            entity="EU01",
            currency="EUR",
            as_of=date(2026, 11, 12),
        )
    approve(pg_ledger, batch)
    post_batch(pg_ledger, batch, actor="airflow", tiers=TIERS, posting_date=date(2026, 11, 12))
    ledger_env(pg_ledger)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))
    folder = tmp_path / "reports" / "kpi"
    folder.mkdir(parents=True)
    for name in ("2026-09.md", "2026-09.json"):  # September was reported; October's run never happened
        (folder / name).write_text("{}")

    dag = DagBag(dag_folder=str(ROOT / "dags" / "writeoff_kpis.py")).dags["writeoff_kpis"]
    run = dag.test(logical_date=pendulum.datetime(2026, 12, 1, 7, tz="UTC"))

    assert str(run.state) == "success"
    with pg_ledger.connect() as conn:
        required = {
            (r.as_of_date, r.bucket): r.required_allowance
            for r in conn.execute(select(allowance_estimates)).all()
            if r.required_allowance
        }
    # 31 Oct: the 2,000.00 invoice (510 days past due) at 90 %; 30 Nov: written off on 12 Nov, gone; the November
    # invoice (not yet due) at 0.5 %. Both from movements: no aging snapshot exists for either date.
    assert required == {
        (date(2026, 10, 31), "365+"): Decimal("1800.0000"),
        (date(2026, 11, 30), "current"): Decimal("50.0000"),
    }
    oct_md, nov_md = (folder / "2026-10.md").read_text(), (folder / "2026-11.md").read_text()
    assert "sub-ledger as of 2026-10-31" in oct_md and "sub-ledger as of 2026-11-30" in nov_md
    # November: 2,000.00 written off of 10,000.00 sales = 20 %; open AR at 30 Nov 10,000.00 = 20 %.
    assert "| EU01 | EUR | 2,000.00 | 10,000.00 | 20.00 % | concerning |" in nov_md


def test_with_an_object_store_the_reports_go_there_and_are_served_from_there(
    airflow_db: str, ledger_env, pg_ledger: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``WRITEOFFS_REPORTS_STORE`` set to an object store (fsspec's in-memory one, in this process as ``dag.test()``
    runs the tasks here): the report, the listing and the charts are written there, nothing under the worker's data
    folder, and the workspace serves them from the store; the catch-up reads the store too (a second run for the
    same month finds the report there)."""
    import uuid

    from airflow.api_fastapi.core_api.security import get_user
    from airflow.dag_processing.dagbag import DagBag
    from fastapi.testclient import TestClient

    from writeoffs.kpi import reported_months
    from writeoffs_airflow.storage import reports_root
    from writeoffs_airflow.workspace.app import create_app

    with pg_ledger.begin() as conn:
        f.entity(conn, "EU01", "EUR", "direct")
        cid = f.customer(conn, "EU01", "C-EU")
        f.invoice(conn, cid, entity_code="EU01", currency="EUR", amount="2000.00", days_past_due=400, as_of=MONTH_END)
        compute_aging(conn, MONTH_END)
    ledger_env(pg_ledger)
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path))
    store = f"memory://kpi-{uuid.uuid4().hex}/reports"
    monkeypatch.setenv("WRITEOFFS_REPORTS_STORE", store)

    dag = DagBag(dag_folder=str(ROOT / "dags" / "writeoff_kpis.py")).dags["writeoff_kpis"]
    run = dag.test(run_conf={"period": "2026-11"})

    assert str(run.state) == "success"
    assert not (tmp_path / "reports").exists()
    kpi = reports_root() / "kpi"
    names = {p.name for p in kpi.iterdir()}
    assert {"2026-11.md", "2026-11.json", "2026-11-tax-listing.csv", "2026-11-writeoff-trend.png"} <= names
    assert "2026-11-aging-buckets-EUR.svg" in names
    assert reported_months(reports=reports_root()) == {"2026-11"}
    app = create_app(engine_factory=lambda: pg_ledger, reader_names=frozenset({"auditor"}))
    app.dependency_overrides[get_user] = lambda: type("U", (), {"get_name": lambda self: "auditor"})()
    client = TestClient(app, root_path="/writeoffs")
    served = client.get("/reports/kpi/2026-11.md")
    assert served.status_code == 200 and served.text == (kpi / "2026-11.md").read_text(encoding="utf-8")
    assert (
        client.get("/reports/kpi/2026-11-writeoff-trend.png").content
        == (kpi / "2026-11-writeoff-trend.png").read_bytes()
    )
