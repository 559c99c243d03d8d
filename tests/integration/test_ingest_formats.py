"""XLSX and Parquet exports go through the same mapping as the CSV export and load the same ledger rows.

A new ERP export is onboarded by configuration only: here the committed `erp_csv` source is copied with
`format: xlsx` / `format: parquet`; the files carry the same headers, with dates as typed cells/columns (what
Excel and Parquet writers produce) that the reader renders back through the configured date format.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select

from writeoffs.db.schema import collection_activities, invoices, payment_allocations
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "bad_inputs"
AS_OF = datetime(2026, 11, 24).date()
DATE_COLUMNS = {"Invoice Date", "Due Date", "Dispute Since", "Payment Date", "Date", "End Date"}


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _typed(header: list[str], row: list[str]) -> list[object]:
    out: list[object] = []
    for name, value in zip(header, row, strict=True):
        if name in DATE_COLUMNS and value:
            out.append(datetime.strptime(value, "%m/%d/%Y"))
        else:
            out.append(value or None)
    return out


def _export(tmp_path: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    payments = (
        ["Company", "Payment No", "Customer No", "Payment Date", "Currency", "Amount", "Invoice No", "Applied Amount"],
        [["US01", "P-9", "C-001", "11/01/2026", "USD", "1,000.00", "INV-0001", "1,000.00"]],
    )
    activities = (
        ["Company", "Customer No", "Invoice No", "Activity", "Date", "End Date", "Outcome"],
        [["US01", "C-001", "INV-0001", "Demand Letter", "01/10/2026", "", ""]],
    )
    return {"invoices": _csv_rows(CORPUS / "good_invoices.csv"), "payments": payments, "activities": activities}


def _write_xlsx(path: Path, header: list[str], rows: list[list[str]]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in rows:
        ws.append(_typed(header, row))
    wb.save(path)


def _write_parquet(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, pa.Array] = {}
    for i, name in enumerate(header):
        values = [_typed(header, r)[i] for r in rows]
        cols[name] = pa.array(
            [v.date() if isinstance(v, datetime) else v for v in values],
            type=pa.date32() if name in DATE_COLUMNS else pa.string(),
        )
    pq.write_table(pa.table(cols), path)


def _config(fmt: str, location: Path) -> source_config.SourcesConfig:
    data = yaml.safe_load((ROOT / "include" / "config" / "sources.yaml").read_text())
    spec = dict(data["sources"]["erp_csv"])
    spec.update(format=fmt, location=str(location), description=f"ERP export as {fmt}")
    spec["datasets"] = {
        name: {**ds, "file": ds["file"].replace(".csv", f".{fmt}")} for name, ds in spec["datasets"].items()
    }
    spec.pop("encoding", None)
    spec.pop("delimiter", None)
    data["sources"] = {f"erp_{fmt}": spec}
    return source_config.parse(data, origin=f"test-{fmt}")


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_xlsx_and_parquet_exports_load_like_the_csv(ledger: Engine, tmp_path: Path, fmt: str) -> None:
    export = _export(tmp_path)
    for dataset, (header, rows) in export.items():
        target = tmp_path / f"{dataset}.{fmt}"
        (_write_xlsx if fmt == "xlsx" else _write_parquet)(target, header, rows)
    (tmp_path / "control.json").write_text(json.dumps({"as_of": AS_OF.isoformat(), "invoices": {"rows": 2}}))

    config = _config(fmt, tmp_path)
    staged = stage(ledger, config, build_source(config.source(f"erp_{fmt}")), AS_OF)
    assert (staged["rows_read"], staged["rows_quarantined"]) == (4, 0), staged
    merge(ledger, config, [staged["batch_id"]], AS_OF)

    with ledger.connect() as conn:
        got = {
            r.invoice_ref: (
                str(r.invoice_date),
                str(r.due_date),
                r.currency,
                f"{r.amount:.2f}",
                f"{r.open_balance:.2f}",
            )
            for r in conn.execute(select(invoices))
        }
        assert got == {
            "INV-0001": ("2025-09-15", "2025-10-15", "USD", "45000.00", "45000.00"),
            "INV-0002": ("2025-09-15", "2025-10-15", "USD", "45000.00", "45000.00"),
        }
        assert [f"{a:.2f}" for a in conn.execute(select(payment_allocations.c.amount)).scalars()] == ["1000.00"]
        kinds = conn.execute(select(collection_activities.c.activity_type, collection_activities.c.activity_date))
        assert [(k, str(d)) for k, d in kinds] == [("demand_letter", "2026-01-10")]
