"""One pipeline, one gate: ``python -m writeoffs ingest`` applies the DAG's validation gate between staging and
merge (control totals, blocking rules, warnings quarantined, the quarantine share limit); a blocked batch exits
non-zero with one line and merges nothing (issue 15: the CLI merged everything, and a 100 % bad feed "succeeded").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import AS_OF, ledger_url_of
from ingest_support import HEADER, invoice_line, ledger_fingerprint, write_config
from sqlalchemy import func, select

from writeoffs.cli import main
from writeoffs.db.schema import invoices
from writeoffs.ingest.tables import ingest_quarantine


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("WRITEOFFS_VALIDATION_CONFIG", raising=False)


def _export(tmp_path: Path, lines: list[str], control_rows: int | None = None) -> Path:
    d = tmp_path / "export"
    d.mkdir(exist_ok=True)
    (d / "invoices.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    over = {}
    if control_rows is not None:
        (d / "control.json").write_text(json.dumps({"as_of": AS_OF.isoformat(), "invoices": {"rows": control_rows}}))
        over["control_file"] = "control.json"
    return write_config(tmp_path / "sources.yaml", d, **over)


def _ingest(ledger, config: Path, capsys, as_of: str = AS_OF.isoformat()) -> tuple[int, str]:
    code = main(["--ledger-url", ledger_url_of(ledger), "ingest", "--as-of", as_of, "--config", str(config)])
    return code, capsys.readouterr().err.strip()


def _invoices(ledger) -> int:
    with ledger.connect() as conn:
        return conn.execute(select(func.count()).select_from(invoices)).scalar_one()


def test_control_total_mismatch_blocks_the_cli_like_the_dag(ledger, tmp_path, capsys) -> None:
    before = ledger_fingerprint(ledger)
    code, err = _ingest(ledger, _export(tmp_path, [invoice_line(1), invoice_line(2)], control_rows=3), capsys)
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith("error: validation blocked") and "control" in last, err
    assert ledger_fingerprint(ledger) == before and _invoices(ledger) == 0


def test_a_100_percent_bad_feed_fails(ledger, tmp_path, capsys) -> None:
    lines = [invoice_line(n, amount="abc") for n in range(1, 6)]
    code, err = _ingest(ledger, _export(tmp_path, lines), capsys)
    assert code == 2
    last = err.splitlines()[-1]
    assert "quarantine_share" in last and "5 of 5 rows refused" in last, err
    assert _invoices(ledger) == 0


def test_a_mostly_good_feed_passes_and_a_future_invoice_is_quarantined_by_the_gate(ledger, tmp_path, capsys) -> None:
    lines = [invoice_line(n) for n in range(1, 25)]
    lines.append(invoice_line(99, **{"Invoice Date": "12/01/2026", "Due Date": "12/31/2026"}))
    code, err = _ingest(ledger, _export(tmp_path, lines, control_rows=25), capsys)
    assert code == 0, err
    assert _invoices(ledger) == 24
    with ledger.connect() as conn:
        q = conn.execute(select(ingest_quarantine.c.source_row, ingest_quarantine.c.field)).all()
    assert [tuple(r) for r in q] == [(26, "invoice_date")]


def test_clean_feed_passes(ledger, tmp_path, capsys) -> None:
    code, err = _ingest(ledger, _export(tmp_path, [invoice_line(1), invoice_line(2)], control_rows=2), capsys)
    assert code == 0, err
    assert _invoices(ledger) == 2


def test_as_of_in_another_format_is_one_line(ledger, tmp_path, capsys) -> None:
    code, err = _ingest(ledger, _export(tmp_path, [invoice_line(1)]), capsys, as_of="30/06/2024")
    assert code == 2
    assert err == "error: --as-of '30/06/2024' is not a date in the form YYYY-MM-DD"
