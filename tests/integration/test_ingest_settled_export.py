"""An export with settled dates instead of an open-balance column is onboarded by configuration alone (issue 15).

The configuration is the YAML block of docs/ingestion.md ("Computed fields and row filters"), read from the
document itself, so the walkthrough cannot drift from what works. The export has the shape of the public AR
history data sets: every invoice ever issued, ``SettledDate`` empty while unpaid. As of a business date D an
invoice is open when ``InvoiceDate <= D < SettledDate`` with open balance = invoice amount; the expected ledger is
computed here independently, with the csv module and Decimal, and compared with what the CLI loaded.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import AS_OF, ledger_url_of
from sqlalchemy import select, text

from writeoffs.cli import main
from writeoffs.db.schema import aging_snapshots, invoices

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "countryCode,customerID,PaperlessDate,invoiceNumber,InvoiceDate,DueDate,InvoiceAmount,Disputed,SettledDate,"
    "PaperlessBill,DaysToSettle,DaysLate"
)
EXPORT = [
    "391,0379-NEVHP,4/6/2013,611365,9/1/2026,10/1/2026,55.94,No,10/20/2026,Paper,49,19",  # settled before D: paid
    "391,8976-AMJEO,3/3/2012,7900770,8/15/2026,9/14/2026,61.74,No,,Electronic,,",  # never settled: open
    "391,2820-XGXSB,1/26/2012,9231909,10/1/2026,10/31/2026,65.88,No,11/24/2026,Electronic,54,24",  # settled on D
    "406,9322-YCTQO,4/6/2012,9888306,10/1/2026,10/31/2026,105.92,No,11/25/2026,Electronic,55,25",  # settled D+1
    "818,6627-ELFBK,11/26/2012,15752855,11/25/2026,12/25/2026,72.27,No,,Paper,,",  # issued D+1: filtered on D
    "770,4305-VAWYN,7/4/2013,19112019,12/10/2026,1/9/2027,92.55,No,12/20/2026,Electronic,10,0",  # issued later
    "897,9725-EZTEJ,1/1/2012,26084044,5/2/2025,6/1/2025,45000.00,Yes,,Paper,,",  # disputed, open 18 months
    "391,0465-DTULQ,8/26/2012,40104522,6/3/2026,7/3/2026,88.13,Yes,8/1/2026,Electronic,59,29",  # disputed, paid
]


def _doc_config() -> str:
    doc = (ROOT / "docs" / "ingestion.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- settled-export-config:[^>]*-->\s*```yaml\n(.*?)```", doc, re.S)
    assert m, "docs/ingestion.md lost its settled-export configuration block"
    return m.group(1)


def _expected(as_of: date) -> dict[str, tuple[str, Decimal]]:
    """Independently: which invoices exist on ``as_of`` and their status and open balance."""
    out = {}
    for row in csv.DictReader([HEADER, *EXPORT]):
        issued = datetime.strptime(row["InvoiceDate"], "%m/%d/%Y").date()
        if issued > as_of:
            continue
        settled = datetime.strptime(row["SettledDate"], "%m/%d/%Y").date() if row["SettledDate"] else None
        is_open = settled is None or as_of < settled
        out[row["invoiceNumber"]] = ("open", Decimal(row["InvoiceAmount"])) if is_open else ("paid", Decimal(0))
    return out


@pytest.fixture
def onboarded(tmp_path, monkeypatch):
    export = tmp_path / "export"
    export.mkdir()
    (export / "accounts_receivable.csv").write_text("\n".join([HEADER, *EXPORT]) + "\n", encoding="utf-8")
    cfg = tmp_path / "ar_history.yaml"
    cfg.write_text(_doc_config(), encoding="utf-8")
    monkeypatch.setenv("AR_HISTORY_DIR", str(export))
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("WRITEOFFS_VALIDATION_CONFIG", raising=False)
    return cfg


def _ingest(ledger, cfg: Path, as_of: date, capsys) -> dict:
    code = main(["--ledger-url", ledger_url_of(ledger), "ingest", "--as-of", as_of.isoformat(), "--config", str(cfg)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _ledger(ledger) -> dict[str, tuple[str, Decimal]]:
    with ledger.connect() as conn:
        rows = conn.execute(select(invoices.c.invoice_ref, invoices.c.status, invoices.c.open_balance)).all()
    return {r.invoice_ref: (r.status, Decimal(r.open_balance)) for r in rows}


def _aging_total(ledger, as_of: date) -> Decimal:
    with ledger.connect() as conn:
        rows = conn.execute(
            select(aging_snapshots.c.open_balance).where(aging_snapshots.c.as_of_date == as_of)
        ).scalars()
        return sum((Decimal(v) for v in rows), Decimal(0))


def test_settled_dates_export_is_onboarded_by_configuration_only(ledger, onboarded, capsys) -> None:
    result = _ingest(ledger, onboarded, AS_OF, capsys)

    expected = _expected(AS_OF)
    assert _ledger(ledger) == expected
    assert expected["7900770"] == ("open", Decimal("61.74")) and expected["9231909"][0] == "paid"
    assert "15752855" not in expected and "19112019" not in expected
    open_total = sum((bal for status, bal in expected.values() if status == "open"), Decimal(0))
    assert _aging_total(ledger, AS_OF) == open_total == Decimal("45167.66")

    counts = result["staged"][0]["datasets"]["invoices"]
    assert (counts["records"], counts["read"], counts["accepted"], counts["quarantined"], counts["filtered"]) == (
        8,
        8,
        6,
        0,
        2,
    )
    assert counts["accepted"] + counts["quarantined"] + counts["filtered"] == counts["records"]
    with ledger.connect() as conn:  # the export flags a paid invoice (40104522) disputed: no hold on it
        held = conn.execute(
            text("SELECT i.invoice_ref FROM holds h JOIN invoices i ON i.id = h.invoice_id WHERE h.end_date IS NULL")
        ).scalars()
        assert sorted(held) == ["26084044"]


def test_the_next_business_date_moves_each_invoice_along(ledger, onboarded, capsys) -> None:
    _ingest(ledger, onboarded, AS_OF, capsys)
    later = AS_OF + timedelta(days=1)
    result = _ingest(ledger, onboarded, later, capsys)

    assert _ledger(ledger) == _expected(later)
    assert _ledger(ledger)["9888306"] == ("paid", Decimal(0))  # settled on the 25th
    assert _ledger(ledger)["15752855"] == ("open", Decimal("72.27"))  # issued on the 25th
    counts = result["staged"][0]["datasets"]["invoices"]
    assert (counts["accepted"], counts["filtered"]) == (7, 1)


# -- the gate and the counts with a filter, on the committed ERP mapping ------------------------------------------
KEEP_ISSUED = {"date": "invoice_date", "op": "<=", "than": "as_of"}


def _erp_export(tmp_path: Path, lines: list[str], control: dict | None = None, **over) -> Path:
    from ingest_support import HEADER as ERP_HEADER
    from ingest_support import config_dict, write_config

    d = tmp_path / "erp"
    d.mkdir(exist_ok=True)
    (d / "invoices.csv").write_text("\n".join([ERP_HEADER, *lines]) + "\n", encoding="utf-8")
    dataset = config_dict(d)["sources"]["t"]["datasets"]["invoices"]
    if control is not None:
        (d / "control.json").write_text(json.dumps({"as_of": AS_OF.isoformat(), "invoices": control}))
        over["control_file"] = "control.json"
    return write_config(tmp_path / "erp.yaml", d, datasets={"invoices": {**dataset, "keep_if": KEEP_ISSUED}}, **over)


def _erp_lines() -> list[str]:
    from ingest_support import invoice_line

    future = {"Invoice Date": "12/01/2026", "Due Date": "12/31/2026"}
    return [invoice_line(1), invoice_line(2), invoice_line(3, **future), invoice_line(4, **future)]


def test_control_rows_count_filtered_rows_and_the_share_guard_ignores_them(ledger, tmp_path, capsys) -> None:
    # 2 of 4 rows filtered: a 50 % "refusal" would trip the 5 % share guard if filtered rows counted as refused;
    # the control file counts all 4 exported rows; its amount total cannot be compared (filtered amounts are gone).
    cfg = _erp_export(tmp_path, _erp_lines(), control={"rows": 4, "amount_total": "4000.00"})
    result = _ingest(ledger, cfg, AS_OF, capsys)
    staged = result["staged"][0]
    assert (staged["rows_read"], staged["rows_accepted"], staged["rows_quarantined"], staged["rows_filtered"]) == (
        4,
        2,
        0,
        2,
    )
    assert sorted(_ledger(ledger)) == ["INV-0001", "INV-0002"]
    with ledger.connect() as conn:
        from writeoffs.ingest.tables import ingest_batches

        details = json.loads(conn.execute(select(ingest_batches.c.details)).scalar_one())
    assert details["invoices"]["filtered"] == 2


def test_a_wrong_control_row_count_still_blocks_with_a_filter(ledger, tmp_path, capsys) -> None:
    cfg = _erp_export(tmp_path, _erp_lines(), control={"rows": 5})
    code = main(["--ledger-url", ledger_url_of(ledger), "ingest", "--as-of", AS_OF.isoformat(), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "control_row_count" in err.splitlines()[-1], err
    assert _ledger(ledger) == {}


def test_filtered_rows_are_not_bad_rows_in_reject_mode(ledger, tmp_path, capsys) -> None:
    result = _ingest(ledger, _erp_export(tmp_path, _erp_lines(), mode="reject"), AS_OF, capsys)
    assert result["staged"][0]["rows_filtered"] == 2
    assert sorted(_ledger(ledger)) == ["INV-0001", "INV-0002"]
