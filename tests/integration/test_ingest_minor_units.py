# ruff: noqa: E501 - inline CSV rows and SQL fixtures read better unwrapped
"""Currency minor units at ingest, on both ledger databases: an amount its currency cannot hold, or one beyond
``writeoffs.money.MAX_AMOUNT``, is quarantined (or rejects the batch) naming row and field; it is never rounded,
never stored, never re-labelled. Files (CSV) and a SQL source (SQLite with float columns, PostgreSQL NUMERIC).
"""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import AS_OF, PG_URL
from sqlalchemy import func, select, text

from writeoffs.db.engine import schema_url
from writeoffs.db.money import from_db
from writeoffs.db.schema import invoices
from writeoffs.errors import InputError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage
from writeoffs.ingest.tables import STAGING, ingest_batches, ingest_quarantine

INV_HEADER = '"Company","Invoice No","Customer No","Customer Name","Parent Customer No","Segment","Invoice Date","Due Date","Currency","Amount","Open Balance","FX Rate","Disputed","Dispute Since","Payment Plan","Bankrupt","Transferred To Parent","Description"'
PAY_HEADER = '"Company","Payment No","Customer No","Payment Date","Currency","Amount","Invoice No","Applied Amount"'
ACT_HEADER = '"Company","Customer No","Invoice No","Activity","Date","End Date","Outcome"'


def inv_line(ref: str, currency: str, amount: str, balance: str, fx: str = "") -> str:
    return f'"US01","{ref}","C-001","Northwind","","it_services","09/15/2025","10/15/2025","{currency}","{amount}","{balance}","{fx}","No","","No","No","No","x"'


#: Sheet rows (the header is row 1): 2 good USD, 3 USD 1234.567, 4 JPY 556.25, 5 KWD 1.234 (fine),
#: 6 beyond MAX_AMOUNT, 7 JPY 556 (fine), 8 JPY balance 100.50.
INVOICES = [
    inv_line("INV-1", "USD", "45,000.00", "45,000.00"),
    inv_line("INV-2", "USD", "1234.567", "1234.567"),
    inv_line("INV-3", "JPY", "556.25", "556.25", "0.0067"),
    inv_line("INV-4", "KWD", "1.234", "1.234", "3.25"),
    inv_line("INV-5", "USD", "100,000,000,000,000.00", "0.00"),
    inv_line("INV-6", "JPY", "556", "556", "0.0067"),
    inv_line("INV-7", "JPY", "1000", "100.50", "0.0067"),
]
PAYMENTS = [
    '"US01","P-1","C-001","11/01/2026","USD","100.00","INV-1","100.00"',
    '"US01","P-2","C-001","11/01/2026","USD","100.00","INV-1","10.005"',
]


def export(tmp_path: Path, invoice_lines: list[str], payment_lines: list[str] = ()) -> Path:
    d = tmp_path / "erp_export"
    d.mkdir(exist_ok=True)
    (d / "invoices.csv").write_text("\n".join([INV_HEADER, *invoice_lines]) + "\n", encoding="utf-8")
    (d / "payments.csv").write_text("\n".join([PAY_HEADER, *payment_lines]) + "\n", encoding="utf-8")
    (d / "activities.csv").write_text(ACT_HEADER + "\n", encoding="utf-8")
    return d


def erp_config(mode: str = "quarantine"):
    cfg = source_config.load()
    body = cfg.source("erp_csv").model_dump(exclude={"name"})
    body.update(on_bad_rows=mode, control_file=None)
    return source_config.parse(
        {
            "version": "test",
            "entities": {n: e.model_dump() for n, e in cfg.entities.items()},
            "sources": {"erp_csv": body},
        }
    )


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        out = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in STAGING.values()}
        for t in (ingest_batches, ingest_quarantine, invoices):
            out[t.name] = conn.execute(select(func.count()).select_from(t)).scalar_one()
    return out


def test_csv_quarantines_each_bad_amount_with_row_and_field_and_keeps_the_rest(ledger, tmp_path) -> None:
    config = erp_config()
    d = export(tmp_path, INVOICES, PAYMENTS)
    s = stage(ledger, config, build_source(config.source("erp_csv"), location=str(d)), AS_OF)
    inv, pay = s["datasets"]["invoices"], s["datasets"]["payments"]
    assert (inv["read"], inv["accepted"], inv["quarantined"]) == (7, 3, 4)
    assert (pay["read"], pay["accepted"], pay["quarantined"]) == (2, 1, 1)
    assert s["rows_accepted"] + s["rows_quarantined"] == s["rows_read"] == 9
    assert s["quarantine_reasons"] == {"amount_too_large": 1, "too_many_decimals": 4}
    # The totals are those of the accepted rows only: nothing of a refused amount, rounded or not, is staged.
    assert inv["totals"] == {"amount": "45557.2340", "open_balance": "45557.2340"}
    with ledger.connect() as conn:
        q = conn.execute(
            select(
                ingest_quarantine.c.dataset,
                ingest_quarantine.c.source_file,
                ingest_quarantine.c.source_row,
                ingest_quarantine.c.field,
                ingest_quarantine.c.reason,
                ingest_quarantine.c.message,
            ).order_by(ingest_quarantine.c.dataset, ingest_quarantine.c.source_row)
        ).all()
        staged = set(conn.execute(text("SELECT invoice_ref FROM stg_invoices")).scalars())
    assert [tuple(r[:5]) for r in q] == [
        ("invoices", "invoices.csv", 3, "amount", "too_many_decimals"),
        ("invoices", "invoices.csv", 4, "amount", "too_many_decimals"),
        ("invoices", "invoices.csv", 6, "amount", "amount_too_large"),
        ("invoices", "invoices.csv", 8, "open_balance", "too_many_decimals"),
        ("payments", "payments.csv", 3, "applied_amount", "too_many_decimals"),
    ]
    messages = [r.message for r in q]
    assert "1234.567 has 3 decimals; USD allows 2" in messages[0]
    assert "556.25 has 2 decimals; JPY allows 0" in messages[1]
    assert "99999999999999.99" in messages[2]
    assert "100.5 has 1 decimal; JPY allows 0" in messages[3]
    assert "10.005 has 3 decimals; USD allows 2" in messages[4]
    assert staged == {"INV-1", "INV-4", "INV-6"}
    merge(ledger, config, [s["batch_id"]], AS_OF)
    with ledger.connect() as conn:
        rows = conn.execute(select(invoices.c.invoice_ref, invoices.c.currency, invoices.c.amount)).all()
    got = {r.invoice_ref: (r.currency, Decimal(str(r.amount))) for r in rows}
    assert got == {
        "INV-1": ("USD", Decimal("45000")),
        "INV-4": ("KWD", Decimal("1.234")),  # three decimals are KWD's minor unit: kept exactly
        "INV-6": ("JPY", Decimal("556")),
    }


@pytest.mark.parametrize(
    ("line", "row", "field", "says"),
    [
        (inv_line("INV-2", "USD", "1234.567", "1234.567"), 3, "amount", "1234.567 has 3 decimals; USD allows 2"),
        (inv_line("INV-3", "JPY", "556.25", "556.25", "0.0067"), 3, "amount", "556.25 has 2 decimals; JPY allows 0"),
        (inv_line("INV-5", "USD", "100000000000000.00", "0.00"), 3, "amount", "99999999999999.99"),
    ],
    ids=["usd", "jpy", "max"],
)
def test_reject_mode_names_file_row_field_and_leaves_nothing(ledger, tmp_path, line, row, field, says) -> None:
    config = erp_config("reject")
    d = export(tmp_path, [INVOICES[0], line])
    with pytest.raises(InputError) as err:
        stage(ledger, config, build_source(config.source("erp_csv"), location=str(d)), AS_OF)
    e = err.value
    assert (e.source, e.file, e.row, e.field) == ("erp_csv", "invoices.csv", row, field), str(e)
    assert says in str(e)
    left = counts(ledger)
    assert left == dict.fromkeys(left, 0), left


def test_kwd_three_decimals_and_zero_padded_amounts_are_accepted(ledger, tmp_path) -> None:
    config = erp_config("reject")
    lines = [
        inv_line("INV-1", "USD", "45000.5000", "45000.50"),  # zero padding is not a decimal
        inv_line("INV-2", "KWD", "1.234", "1.234", "3.25"),
        inv_line("INV-3", "JPY", "556.000", "556", "0.0067"),
        inv_line("INV-4", "USD", "99,999,999,999,999.99", "0.00"),  # MAX_AMOUNT itself
    ]
    s = stage(ledger, config, build_source(config.source("erp_csv"), location=str(export(tmp_path, lines))), AS_OF)
    assert (s["rows_read"], s["rows_accepted"], s["rows_quarantined"]) == (4, 4, 0)


# -- a SQL source: values arrive typed (floats from SQLite REAL columns, Decimals from PostgreSQL NUMERIC) -----------

COLS = "entity, invoice_ref, customer_ref, customer_name, parent_customer_ref, segment, invoice_date, due_date, currency, amount, open_balance, fx_rate, disputed, dispute_since, payment_plan, bankrupt, transferred_to_parent, description"


def _sql_invoice(ref: str, currency: str, amount: object, fx: object = None) -> tuple:
    return (
        "US01",
        ref,
        "C1",
        "N",
        None,
        "x",
        "2025-09-15",
        "2025-10-15",
        currency,
        amount,
        amount,
        fx,
        0,
        None,
        0,
        0,
        0,
        None,
    )


def _quarantined(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    ingest_quarantine.c.source_row,
                    ingest_quarantine.c.field,
                    ingest_quarantine.c.reason,
                    ingest_quarantine.c.message,
                ).order_by(ingest_quarantine.c.source_row)
            )
        ]


def test_sql_source_with_float_columns_refuses_instead_of_rounding(ledger, tmp_path) -> None:
    db = tmp_path / "source.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE ar_invoices (entity TEXT, invoice_ref TEXT, customer_ref TEXT, customer_name TEXT, parent_customer_ref TEXT, segment TEXT, invoice_date TEXT, due_date TEXT, currency TEXT, amount REAL, open_balance REAL, fx_rate REAL, disputed INTEGER, dispute_since TEXT, payment_plan INTEGER, bankrupt INTEGER, transferred_to_parent INTEGER, description TEXT)"
    )
    con.execute(
        "CREATE TABLE ar_payments (entity TEXT, payment_ref TEXT, customer_ref TEXT, payment_date TEXT, currency TEXT, amount REAL, invoice_ref TEXT, applied_amount REAL)"
    )
    con.execute(
        "CREATE TABLE ar_activities (entity TEXT, customer_ref TEXT, invoice_ref TEXT, activity_type TEXT, activity_date TEXT, end_date TEXT, outcome TEXT)"
    )
    rows = [
        _sql_invoice("INV-1", "USD", 45000.5),
        _sql_invoice("INV-2", "USD", 1234.567),
        _sql_invoice("INV-3", "JPY", 556.25, 0.0067),
        _sql_invoice("INV-4", "KWD", 1.234, 3.25),
        _sql_invoice("INV-5", "USD", 0.1 + 0.2),  # binary noise: 0.30000000000000004, never silently 0.30
        _sql_invoice("INV-6", "USD", 1e14),
    ]
    con.executemany(f"INSERT INTO ar_invoices ({COLS}) VALUES ({', '.join('?' * 18)})", rows)
    con.commit()
    con.close()
    config = source_config.load()
    s = stage(ledger, config, build_source(config.source("billing_db"), url=f"sqlite:///{db}"), AS_OF)
    assert (s["rows_read"], s["rows_accepted"], s["rows_quarantined"]) == (6, 2, 4)
    got = _quarantined(ledger)
    assert [r[:3] for r in got] == [
        (2, "amount", "too_many_decimals"),
        (3, "amount", "too_many_decimals"),
        (5, "amount", "too_many_decimals"),
        (6, "amount", "amount_too_large"),
    ]
    assert "0.30000000000000004 has 17 decimals; USD allows 2" in got[2][3]
    with ledger.connect() as conn:
        staged = dict(conn.execute(text("SELECT invoice_ref, amount FROM stg_invoices")).all())
    decoded = {k: from_db(ledger.dialect, v) for k, v in staged.items()}
    assert decoded == {"INV-1": Decimal("45000.5"), "INV-4": Decimal("1.234")}


def test_sql_source_postgres_numeric_columns(pg_admin, ledger) -> None:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    with pg_admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
        c.execute(
            text(
                f'CREATE TABLE "{schema}".ar_invoices (entity text, invoice_ref text, customer_ref text, customer_name text, parent_customer_ref text, segment text, invoice_date date, due_date date, currency text, amount numeric(20,4), open_balance numeric(20,4), fx_rate numeric, disputed boolean, dispute_since date, payment_plan boolean, bankrupt boolean, transferred_to_parent boolean, description text)'
            )
        )
        c.execute(
            text(
                f'CREATE TABLE "{schema}".ar_payments (entity text, payment_ref text, customer_ref text, payment_date date, currency text, amount numeric, invoice_ref text, applied_amount numeric)'
            )
        )
        c.execute(
            text(
                f'CREATE TABLE "{schema}".ar_activities (entity text, customer_ref text, invoice_ref text, activity_type text, activity_date date, end_date date, outcome text)'
            )
        )
        c.execute(
            text(
                f"""INSERT INTO "{schema}".ar_invoices VALUES
                ('US01','INV-1','C1','N',NULL,'x','2025-09-15','2025-10-15','USD',45000.5,45000.5,NULL,false,NULL,false,false,false,NULL),
                ('US01','INV-2','C1','N',NULL,'x','2025-09-15','2025-10-15','USD',1234.567,1234.567,NULL,false,NULL,false,false,false,NULL),
                ('US01','INV-3','C1','N',NULL,'x','2025-09-15','2025-10-15','JPY',556.25,556.25,0.0067,false,NULL,false,false,false,NULL),
                ('US01','INV-4','C1','N',NULL,'x','2025-09-15','2025-10-15','KWD',1.234,1.234,3.25,false,NULL,false,false,false,NULL),
                ('US01','INV-5','C1','N',NULL,'x','2025-09-15','2025-10-15','JPY',556,556,0.0067,false,NULL,false,false,false,NULL)"""
            )
        )
        c.execute(
            text(
                f"""INSERT INTO "{schema}".ar_payments VALUES ('US01','P-1','C1','2026-11-01','USD',100.000000,'INV-1',99.999999),
                ('US01','P-2','C1','2026-11-01','USD',100000000000000,'INV-1',NULL)"""
            )
        )
    try:
        config = source_config.load()
        url = schema_url(PG_URL, schema)
        s = stage(ledger, config, build_source(config.source("billing_db"), url=url), AS_OF)
        assert (s["datasets"]["invoices"]["read"], s["datasets"]["invoices"]["accepted"]) == (5, 3)
        assert (s["datasets"]["payments"]["read"], s["datasets"]["payments"]["accepted"]) == (2, 0)
        assert s["rows_accepted"] + s["rows_quarantined"] == s["rows_read"]
        with ledger.connect() as conn:
            got = conn.execute(
                select(
                    ingest_quarantine.c.dataset,
                    ingest_quarantine.c.source_row,
                    ingest_quarantine.c.field,
                    ingest_quarantine.c.reason,
                ).order_by(ingest_quarantine.c.dataset, ingest_quarantine.c.source_row)
            ).all()
        assert [tuple(r) for r in got] == [
            ("invoices", 2, "amount", "too_many_decimals"),
            ("invoices", 3, "amount", "too_many_decimals"),
            ("payments", 1, "applied_amount", "too_many_decimals"),
            ("payments", 2, "amount", "amount_too_large"),
        ]
    finally:
        with pg_admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
