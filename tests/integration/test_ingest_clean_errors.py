"""Clean errors: one line, values cut to a sane length, nothing created or half-written (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import AS_OF, pg_schema_url
from ingest_support import HEADER, invoice_line, source_for
from sqlalchemy import select, text

from writeoffs.cli import main
from writeoffs.errors import ConfigError, InputError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.ingest.tables import ingest_quarantine


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["trail", "INV-1"],
        ["summary"],
        ["ingest", "--as-of", "2026-11-24"],
        ["allowance", "--as-of", "2026-11-24"],
    ],
    ids=["trail", "summary", "ingest", "allowance"],
)
def test_commands_on_a_ledger_never_initialised_say_so_and_create_nothing(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.delenv("WRITEOFFS_LEDGER_URL", raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("WRITEOFFS_DATA_DIR", str(data))
    code = main(argv)
    assert code == 2
    err = _one_line(capsys)
    assert err.startswith("error: no ledger at sqlite:///") and "init-db" in err, err
    assert not data.exists()  # no data directory, no empty SQLite file


def test_explicit_sqlite_url_is_not_created(tmp_path, capsys) -> None:
    db = tmp_path / "x" / "ledger.db"
    assert main(["--ledger-url", f"sqlite:///{db}", "trail", "INV-1"]) == 2
    assert "no ledger" in _one_line(capsys)
    assert not db.exists() and not db.parent.exists()


def test_postgres_schema_without_ledger_tables(pg_schema, capsys) -> None:
    assert main(["--ledger-url", pg_schema_url(pg_schema), "summary"]) == 2
    assert "has no ledger schema" in _one_line(capsys)


def test_bad_date_option_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["allowance", "--as-of", "30/06/2024"])
    assert exit_.value.code == 2
    err = _one_line(capsys)
    assert err.startswith("error: argument --as-of") and "30/06/2024" in err


def _write(tmp_path: Path, lines: list[str]) -> None:
    (tmp_path / "invoices.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")


def test_a_huge_value_is_cut_in_the_one_line_error(ledger, tmp_path) -> None:
    huge = "9" * 200_000
    _write(tmp_path, [invoice_line(1), invoice_line(2, description="x" * 300_000, amount=huge)])
    cfg = source_for(tmp_path, mode="reject")
    with pytest.raises(InputError) as err:
        stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    msg = str(err.value)
    assert len(msg) < 1200 and "999999999" in msg and huge not in msg and "\n" not in msg
    assert err.value.row == 3 and err.value.field == "amount"


def test_stored_raw_record_of_a_huge_row_is_valid_json(ledger, tmp_path) -> None:
    _write(tmp_path, [invoice_line(1), invoice_line(2, description="é" * 300_000, amount="abc")])
    cfg = source_for(tmp_path)
    stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    with ledger.connect() as conn:
        raw, message = conn.execute(select(ingest_quarantine.c.raw, ingest_quarantine.c.message)).one()
    record = json.loads(raw)  # valid JSON, not cut mid-string
    assert len(raw) <= 10_000 and record["Amount"] == "abc"
    assert record["Description"].startswith("é" * 100) and "300000 chars" in record["Description"]
    assert len(message) <= 500


def test_duplicate_keys_in_the_mapping_yaml_name_the_line(tmp_path) -> None:
    p = tmp_path / "sources.yaml"
    p.write_text(
        "version: '1'\n"
        "sources:\n"
        "  s:\n"
        "    kind: file\n"
        "    location: /x\n"
        "    format: csv\n"
        "    datasets:\n"
        "      invoices:\n"
        "        file: a.csv\n"
        "        columns:\n"
        "          Amount: amount\n"
        "          Invoice No: invoice_ref\n"
        "          Amount: open_balance\n"
    )
    with pytest.raises(ConfigError) as err:
        source_config.load(p)
    msg = str(err.value)
    assert "line 13" in msg and "duplicate key 'Amount'" in msg and "first on line 11" in msg, msg


def test_ledger_without_schema_is_not_created_for_ingest_on_postgres(pg_schema, tmp_path, capsys) -> None:
    url = pg_schema_url(pg_schema)
    assert main(["--ledger-url", url, "ingest", "--as-of", "2026-11-24"]) == 2
    assert "has no ledger schema" in _one_line(capsys)
    from writeoffs.db.engine import make_engine

    with make_engine(url).connect() as conn:
        n = conn.execute(
            text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = :s"), {"s": pg_schema}
        ).scalar_one()
    assert n == 0
