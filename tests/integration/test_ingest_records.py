"""Every physical record is accounted for: the reader counts records with a strict byte scan, independently of the
CSV parser, and a file whose records cannot be told apart is rejected whole, naming file and line.

Attack tests (issue 15): a stray quote that swallowed the rest of a 20-row file ("4 rows read" and exit 0), CR-only
line endings and NUL bytes (a PostgreSQL COPY error and no audited rejection), ``encoding: utf-16``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import AS_OF
from ingest_support import HEADER, invoice_line, ledger_fingerprint, source_for
from sqlalchemy import func, select

from writeoffs.db.schema import audit_log
from writeoffs.errors import InputError
from writeoffs.ingest.merge import merge
from writeoffs.ingest.records import scan
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.ingest.tables import STAGING, ingest_quarantine


def _write(tmp_path: Path, lines: list[str], *, newline: str = "\n", name: str = "invoices.csv") -> Path:
    p = tmp_path / name
    p.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return p


def _loaded(ledger, tmp_path: Path):
    """A ledger with one good day merged in, so that 'unchanged' means something."""
    good = tmp_path / "good"
    good.mkdir()
    _write(good, [HEADER, invoice_line(1), invoice_line(2)])
    cfg = source_for(good)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    merge(ledger, cfg, [s["batch_id"]], AS_OF)
    return ledger_fingerprint(ledger)


def _reject(ledger, tmp_path: Path, lines_or_bytes, **cfg_over) -> InputError:
    bad = tmp_path / "bad"
    bad.mkdir()
    if isinstance(lines_or_bytes, bytes):
        (bad / "invoices.csv").write_bytes(lines_or_bytes)
    else:
        _write(bad, lines_or_bytes)
    cfg = source_for(bad, **cfg_over)
    with pytest.raises(InputError) as err:
        stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert err.value.file == "invoices.csv" and err.value.source == "t"
    return err.value


def _no_staged_rows(ledger) -> None:
    with ledger.connect() as conn:
        assert sum(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in STAGING.values()) == 2


def test_stray_quote_rejects_the_whole_file_naming_the_line(ledger, tmp_path) -> None:
    before = _loaded(ledger, tmp_path)
    # An unquoted export of 20 rows; row 5 has a stray quote at the start of a field. The parser used to read
    # 4 rows and swallow the other 16 into one bad record.
    lines = [HEADER.replace('"', "")] + [invoice_line(n, amount="1000.00").replace('"', "") for n in range(10, 30)]
    lines[6] = lines[6].replace(",Northwind,", ',"Northwind,')
    err = _reject(ledger, tmp_path, lines)
    assert err.row == 7, str(err)
    assert "line 7" in str(err) and "stray quote" in str(err) and "rejected" in str(err)
    assert ledger_fingerprint(ledger) == before
    _no_staged_rows(ledger)
    with ledger.connect() as conn:
        assert conn.execute(select(audit_log.c.action).order_by(audit_log.c.id.desc())).scalars().first() == (
            "ingest.rejected"
        )


def test_stray_quote_that_closes_on_a_later_line_is_rejected(ledger, tmp_path) -> None:
    lines = [HEADER.replace('"', "")] + [invoice_line(n, amount="1000.00").replace('"', "") for n in range(10, 30)]
    lines[3] = lines[3].replace(",Northwind,", ',"Northwind,')
    lines[9] = lines[9].replace(",Northwind,", ',Northwind",')
    err = _reject(ledger, tmp_path, lines)
    assert err.row == 4 and "stray quote" in str(err), str(err)


def test_quote_inside_an_unquoted_field_is_kept_as_text(ledger, tmp_path) -> None:
    line = 'US01,INV-0002,C-001,12" pipes,,x,09/15/2025,10/15/2025,USD,1,1,,No,,No,No,No,d'
    _write(tmp_path, [HEADER, invoice_line(1), line])
    cfg = source_for(tmp_path)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    assert s["rows_accepted"] == 2 and s["datasets"]["invoices"]["records"] == 2
    with ledger.connect() as conn:
        t = STAGING["invoices"]
        names = set(conn.execute(select(t.c.customer_name)).scalars())
    assert '12" pipes' in names


def test_legitimate_quoted_line_breaks_and_escaped_quotes_are_one_record_each(ledger, tmp_path) -> None:
    lines = [HEADER, invoice_line(1, description='two\nlines, and a ""quoted"" word'), invoice_line(2)]
    _write(tmp_path, lines)
    cfg = source_for(tmp_path, newlines_in_values=True)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    ds = s["datasets"]["invoices"]
    assert ds["records"] == 2 == ds["read"] == ds["accepted"] + ds["quarantined"]
    assert ds["accepted"] == 2


def test_quoted_line_breaks_are_refused_unless_the_source_allows_them(ledger, tmp_path) -> None:
    err = _reject(ledger, tmp_path, [HEADER, invoice_line(1), invoice_line(2, description="two\nlines")])
    assert err.row == 3 and "newlines_in_values" in str(err)


def test_cr_only_line_endings_are_one_clear_line(ledger, tmp_path) -> None:
    before = _loaded(ledger, tmp_path)
    data = ("\r".join([HEADER, invoice_line(1), invoice_line(2)]) + "\r").encode()
    err = _reject(ledger, tmp_path, data)
    assert "CR-only" in str(err) and err.row == 1
    assert ledger_fingerprint(ledger) == before


def test_crlf_line_endings_are_fine(ledger, tmp_path) -> None:
    _write(tmp_path, [HEADER, invoice_line(1), invoice_line(2)], newline="\r\n")
    cfg = source_for(tmp_path)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    assert s["rows_accepted"] == 2 and s["datasets"]["invoices"]["records"] == 2


def test_nul_byte_in_a_field_names_line_and_column_no_copy_error(ledger, tmp_path) -> None:
    before = _loaded(ledger, tmp_path)
    err = _reject(ledger, tmp_path, [HEADER, invoice_line(1), invoice_line(2, description="bad\x00byte")])
    assert "NUL" in str(err) and err.row == 3 and err.field == "Description", str(err)
    assert ledger_fingerprint(ledger) == before


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_exports_are_read(ledger, tmp_path, encoding) -> None:
    lines = [HEADER, invoice_line(1, description="Société"), invoice_line(2, amount="abc"), invoice_line(3)]
    (tmp_path / "invoices.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    cfg = source_for(tmp_path, encoding=encoding)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    ds = s["datasets"]["invoices"]
    assert (ds["records"], ds["accepted"], ds["quarantined"]) == (3, 2, 1)
    with ledger.connect() as conn:
        q = conn.execute(select(ingest_quarantine.c.source_row, ingest_quarantine.c.field)).all()
        names = set(conn.execute(select(STAGING["invoices"].c.description)).scalars())
    assert [tuple(r) for r in q] == [(3, "amount")] and "Société" in names


def test_utf16_that_is_not_utf16_is_one_clear_line(ledger, tmp_path) -> None:
    err = _reject(ledger, tmp_path, b"a,b\n1,2\n3", encoding="utf-16-le")
    assert "not valid utf-16-le text" in str(err)


def test_a_utf16_file_read_as_utf8_is_refused_clearly(ledger, tmp_path) -> None:
    data = ("\n".join([HEADER, invoice_line(1)]) + "\n").encode("utf-16")
    err = _reject(ledger, tmp_path, data)
    assert "UTF-16" in str(err) and "convert" in str(err)


def test_counts_identity_is_reported_with_bad_records(ledger, tmp_path) -> None:
    extra = invoice_line(3) + ',"surplus"'
    lines = [HEADER, invoice_line(1), invoice_line(2, amount="abc"), extra, "", invoice_line(4)]
    _write(tmp_path, lines)
    cfg = source_for(tmp_path)
    s = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)
    ds = s["datasets"]["invoices"]
    assert ds["records"] == 4  # the blank line is not a record
    assert ds["accepted"] + ds["quarantined"] == ds["records"] == ds["read"]
    assert ds["quarantined"] == 2


@pytest.mark.parametrize(
    ("text", "records", "line"),
    [
        ("a,b\n1,2\n", 2, None),
        ('\ufeffa,b\n"1","2"\n', 2, None),
        ('a,b\n"x\ny",2\n3,4', 3, None),  # no final line break: the last record still counts
        ("a,b\n\n\r\n1,2\n", 2, None),
        ('a,b\n1,"2\n3,4\n', None, 2),
        ('a,b\n1,"2"x\n', None, 2),
        ('a,b\n1,2"\n', None, 2),
        ("a,b\r1,2\r", None, 1),
        ("a,b\n1,2\x00\n", None, 2),
        ('a,b\n"x\ry",2\n', 2, None),  # a CR inside quotes is part of the value
    ],
)
def test_scan(tmp_path, text: str, records: int | None, line: int | None) -> None:
    p = tmp_path / "f.csv"
    p.write_bytes(text.encode("utf-8"))
    s = scan(p, delimiter=",", quotechar='"')
    if line is None:
        assert s.problem is None and s.records == records
    else:
        assert s.problem is not None and s.problem.line == line, s


@pytest.mark.parametrize(
    ("text", "lines", "non_blank", "lone_cr", "nul"),
    [
        ("a,b\n1,2\n", 2, 2, False, False),
        ("a,b\n1,2", 2, 2, False, False),
        ("\ufeffa,b\r\n1,2\r\n", 2, 2, False, False),
        ("\na,b\n\n\n1,2\n\n", 6, 2, False, False),
        ("a,b\r\n\r\n1,2\r\n\r\n", 4, 2, False, False),
        ("a,b\r1,2\r", 1, 1, True, False),
        ("a,b\n1,\x002\n", 2, 2, False, True),
        ("a,b\r\n1\r2,3\r\n", 2, 2, True, False),  # CRLF endings with one lone CR inside a line
        ("a,b\r\n1,2\r\n3,4\r", 3, 3, True, False),  # a CR ending the file is lone
    ],
)
@pytest.mark.parametrize("block", [None, 3])  # 3 bytes: every pattern meets a block boundary somewhere
def test_count_lines(tmp_path, monkeypatch, text, lines, non_blank, lone_cr, nul, block) -> None:
    from writeoffs.ingest import records
    from writeoffs.ingest.records import count_lines

    if block:
        monkeypatch.setattr(records, "_BLOCK", block)
    p = tmp_path / "f.csv"
    p.write_bytes(text.encode("utf-8"))
    fast = count_lines(p)
    assert (fast.records, fast.lone_cr, fast.nul) == (lines, lone_cr, nul)
    assert count_lines(p, blank_lines=True).records == non_blank
