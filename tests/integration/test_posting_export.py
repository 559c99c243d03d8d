"""Journal-import file export: documented layout, checksum beside it, same batch => same bytes."""

from __future__ import annotations

import csv
import hashlib
import io
from decimal import Decimal

from sqlalchemy import Engine

from tests import factories as f
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs.gl_export import COLUMNS, BuiltinLedger, JournalImportFile, export_batch
from writeoffs.posting import post_batch


def posted_batch(engine: Engine) -> int:
    with engine.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        eur = f.invoice(
            conn, cid, ref="INV-EUR,1", currency="EUR", amount="100.01", fx_rate="1.08333", days_past_due=400
        )
        usd = f.invoice(conn, cid, ref="INV-USD-2", amount="250.00", days_past_due=400)
        batch = make_batch(conn, [(eur, "100.01", "bankruptcy")], currency="EUR")
        other = make_batch(conn, [(usd, "250.00", "uncollectible_after_collections")])
    approve(engine, batch)
    approve(engine, other)
    post_batch(engine, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    post_batch(engine, other, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    return batch


def test_export_layout_checksum_and_reproducibility(ledger: Engine, tmp_path) -> None:
    batch = posted_batch(ledger)

    with ledger.connect() as conn:
        first = export_batch(conn, batch, tmp_path)
        data = open(first.path, "rb").read()
        second = JournalImportFile(tmp_path).publish(conn, batch)
        builtin = BuiltinLedger().publish(conn, batch)

    assert open(second.path, "rb").read() == data and second.sha256 == first.sha256
    checksum = open(first.path + ".sha256").read()
    assert checksum == f"{hashlib.sha256(data).hexdigest()}  {first.path.rsplit('/', 1)[1]}\n"
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert tuple(rows[0]) == COLUMNS
    body = [dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]]
    assert [
        (
            r["line_no"],
            r["account"],
            r["currency"],
            r["debit"],
            r["credit"],
            r["functional_currency"],
            r["functional_debit"],
            r["functional_credit"],
        )
        for r in body
    ] == [
        ("1", "6110", "EUR", "100.01", "0.00", "USD", "108.34", "0.00"),
        ("2", "1100", "EUR", "0.00", "100.01", "USD", "0.00", "108.34"),
    ]
    assert {r["invoice_ref"] for r in body} == {"INV-EUR,1"}  # quoted, not split, by the CSV writer
    assert {(r["entity"], r["posting_date"], r["period"]) for r in body} == {("US01", "2026-11-24", "2026-11")}
    assert body[0]["entry_key"].startswith("wo:")
    assert (first.entries, first.lines, builtin.entries, builtin.lines) == (1, 2, 1, 2)
    assert sum(Decimal(r["debit"]) for r in body) == sum(Decimal(r["credit"]) for r in body)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left behind


def test_the_cli_exports_a_posted_batch_and_refuses_one_with_nothing_posted(ledger: Engine, tmp_path, capsys) -> None:
    """``python -m writeoffs export-journal``: the file the library writes, byte for byte; a batch that does not
    exist or has nothing posted is refused in one line and no file is written (an importer must never receive an
    empty journal as the batch)."""
    from tests.conftest import ledger_url_of
    from writeoffs.cli import main

    batch = posted_batch(ledger)
    url = ledger_url_of(ledger)
    out = tmp_path / "gl"
    assert main(["--ledger-url", url, "export-journal", "--batch", str(batch), "--out", str(out)]) == 0
    with ledger.connect() as conn:
        expected = export_batch(conn, batch, tmp_path / "lib")
    (written,) = sorted(out.glob("*.csv"))
    assert written.read_bytes() == open(expected.path, "rb").read()
    assert f"sha256 {expected.sha256}" in capsys.readouterr().out

    with ledger.begin() as conn:
        unposted = make_batch(conn, [(f.invoice(conn, f.customer(conn), ref="INV-X", days_past_due=400), "9.00", "x")])
    for missing in (unposted, 987654):
        empty = tmp_path / f"none-{missing}"
        assert main(["--ledger-url", url, "export-journal", "--batch", str(missing), "--out", str(empty)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: write-off batch") and len(err.splitlines()) == 1, err
        assert list(empty.glob("*")) == []
