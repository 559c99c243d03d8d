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
    # The charts beside the report: SVG files, one per chart, the aging bars from the month-end snapshot.
    charts = {p.name: p.read_text() for p in (tmp_path / "reports" / "kpi").glob("2026-11-*.svg")}
    assert set(charts) == {
        f"2026-11-{c}.svg" for c in ("writeoff-trend", "rate-of-sales", "rate-of-ar", "by-reason", "aging-buckets-EUR")
    }
    assert all("<svg" in t and "</svg>" in t for t in charts.values())
    assert 'data-label="365+" data-value="2000.0000"' in charts["2026-11-aging-buckets-EUR.svg"]
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
