# ruff: noqa: E501 - inline SQL fixtures and JSON rows read better unwrapped
"""Connectors against real local services, and the whole ingest on both ledger databases.

Files in tmp_path, a real SQLite and a real PostgreSQL source database, and a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import AS_OF, PG_URL
from sqlalchemy import func, select, text

from writeoffs import ledger
from writeoffs.db.engine import schema_url
from writeoffs.db.schema import invoices, journal_entries
from writeoffs.errors import InputError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.pipeline import age
from writeoffs.ingest.sources import HttpAuth, build_source
from writeoffs.ingest.staging import stage

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
INV = {
    "entity": "US01", "invoice_ref": "INV-1", "customer_ref": "C1", "customer_name": "Northwind",
    "parent_customer_ref": None, "segment": "it_services", "invoice_date": "2025-09-15", "due_date": "2025-10-15",
    "currency": "USD", "amount": "45000.00", "open_balance": "45000.00", "fx_rate": None, "disputed": False,
    "dispute_since": None, "payment_plan": False, "bankrupt": False, "transferred_to_parent": False,
    "description": "consulting",
}  # fmt: skip
INV2 = {**INV, "entity": "EU01", "invoice_ref": "INV-2", "customer_ref": "C2", "currency": "GBP", "amount": "1000.00",
        "open_balance": "500.00", "fx_rate": "1.15", "disputed": True, "dispute_since": "2026-11-01",
        "invoice_date": "2026-10-01", "due_date": "2026-10-31"}  # fmt: skip
PAY = {"entity": "EU01", "payment_ref": "P-1", "customer_ref": "C2", "payment_date": "2026-11-10", "currency": "GBP",
       "amount": "500.00", "invoice_ref": "INV-2", "applied_amount": "500.00"}  # fmt: skip
ACT = {"entity": "US01", "customer_ref": "C1", "invoice_ref": "INV-1", "activity_type": "contact_attempt",
       "activity_date": "2026-01-10", "end_date": None, "outcome": None}  # fmt: skip


def cfg():
    return source_config.load()


def erp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "erp_export"
    d.mkdir()
    (d / "invoices.csv").write_bytes((CORPUS / "good_invoices.csv").read_bytes())
    (d / "payments.csv").write_text(
        '"Company","Payment No","Customer No","Payment Date","Currency","Amount","Invoice No","Applied Amount"\n"US01","P-9","C-001","11/01/2026","USD","1,000.00","INV-0001","1,000.00"\n'
    )
    (d / "activities.csv").write_text(
        '"Company","Customer No","Invoice No","Activity","Date","End Date","Outcome"\n"US01","C-001","INV-0001","Call","01/10/2026","",""\n"US01","C-001","INV-0001","Call","01/10/2026","",""\n'
    )
    (d / "control.json").write_text(json.dumps({"as_of": AS_OF.isoformat(), "invoices": {"rows": 2}}))
    return d


def gl_ties(engine) -> None:
    """GL AR control per entity/currency equals the sub-ledger open balance: the AR sync entries keep it so."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(invoices.c.entity_code, invoices.c.currency, func.sum(invoices.c.open_balance)).group_by(
                invoices.c.entity_code, invoices.c.currency
            )
        ).all()
        assert rows
        for entity, currency, total in rows:
            ar = ledger.account_for_role(conn, entity, "ar_control")
            assert ledger.account_balance(conn, entity, ar, currency) == Decimal(str(total)).quantize(Decimal("0.0001"))


def test_erp_csv_end_to_end_and_rerun_is_idempotent(ledger, tmp_path) -> None:
    engine = ledger
    config = cfg()
    src = lambda: build_source(config.source("erp_csv"), location=str(erp_dir_cached))  # noqa: E731
    erp_dir_cached = erp_dir(tmp_path)
    s1 = stage(engine, config, src(), AS_OF)
    assert (s1["rows_read"], s1["rows_quarantined"]) == (5, 0)
    m1 = merge(engine, config, [s1["batch_id"]], AS_OF)
    assert [e["net_change"] for e in m1["batches"][0]["ar_sync"]] == ["90000.00"]
    gl_ties(engine)
    a1 = age(engine, config, AS_OF)
    assert a1["by_entity_currency"]["US01/USD"]["buckets"]["365+"]["open_balance"] == "90000.00"
    # Same day again: replaces the batch, changes nothing in the ledger, posts nothing twice.
    s2 = stage(engine, config, src(), AS_OF)
    assert s2["batch_id"] == s1["batch_id"] and s2["load_no"] == 2
    m2 = merge(engine, config, [s2["batch_id"]], AS_OF)
    assert m2["batches"][0]["ar_sync"] == [] and m2["batches"][0]["counts"]["invoices_inserted"] == 0
    assert merge(engine, config, [s2["batch_id"]], AS_OF)["batches"][0]["already_merged"] is True
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invoices)).scalar_one() == 2
        assert conn.execute(text("SELECT COUNT(*) FROM collection_activities")).scalar_one() == 2
        assert conn.execute(text("SELECT COUNT(*) FROM stg_invoices")).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(journal_entries)).scalar_one() == 1
    # A payment reduced one invoice in the source: the change (and only it) is posted, GL still ties.
    d = erp_dir_cached
    (d / "invoices.csv").write_text(
        (d / "invoices.csv")
        .read_text()
        .replace(
            '"INV-0002","C-001","Northwind","","it_services","09/15/2025","10/15/2025","USD","45,000.00","45,000.00"',
            '"INV-0002","C-001","Northwind","","it_services","09/15/2025","10/15/2025","USD","45,000.00","0.00"',
        )
    )
    s3 = stage(engine, config, src(), AS_OF)
    m3 = merge(engine, config, [s3["batch_id"]], AS_OF)
    assert [e["net_change"] for e in m3["batches"][0]["ar_sync"]] == ["-45000.00"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM invoices WHERE invoice_ref = 'INV-0002'")).scalar_one() == "paid"
    gl_ties(engine)


def test_written_off_invoice_is_not_overwritten(ledger, tmp_path) -> None:
    config = cfg()
    d = erp_dir(tmp_path)
    s = stage(ledger, config, build_source(config.source("erp_csv"), location=str(d)), AS_OF)
    merge(ledger, config, [s["batch_id"]], AS_OF)
    with ledger.begin() as conn:
        conn.execute(
            text(
                "UPDATE invoices SET status = 'written_off', open_balance = 0, written_off_amount = amount WHERE invoice_ref = 'INV-0001'"
            )
        )
    s = stage(ledger, config, build_source(config.source("erp_csv"), location=str(d)), AS_OF)
    out = merge(ledger, config, [s["batch_id"]], AS_OF)["batches"][0]["counts"]
    assert out["invoices_protected_by_ledger_state"] == 1
    with ledger.connect() as conn:
        assert (
            conn.execute(text("SELECT status, open_balance FROM invoices WHERE invoice_ref = 'INV-0001'")).one()[0]
            == "written_off"
        )


def test_holds_follow_the_flags_and_only_ingestion_holds_are_closed(ledger, tmp_path) -> None:
    config = cfg()
    d = erp_dir(tmp_path)
    flagged = (d / "invoices.csv").read_text().replace('"No","","No"', '"Yes","11/01/2026","Yes"')
    (d / "invoices.csv").write_text(flagged)
    src = lambda: build_source(config.source("erp_csv"), location=str(d))  # noqa: E731
    counts = merge(ledger, config, [stage(ledger, config, src(), AS_OF)["batch_id"]], AS_OF)["batches"][0]["counts"]
    assert (counts["dispute_holds_opened"], counts["payment_plan_holds_opened"]) == (2, 2)
    with ledger.begin() as conn:  # a person puts their own dispute hold on INV-0001 as well
        conn.execute(
            text(
                "INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, note) SELECT customer_id, id, 'dispute', '2026-11-02', 'collector' FROM invoices WHERE invoice_ref = 'INV-0001'"
            )
        )
    again = merge(ledger, config, [stage(ledger, config, src(), AS_OF)["batch_id"]], AS_OF)["batches"][0]["counts"]
    assert (again["dispute_holds_opened"], again["dispute_holds_closed"]) == (0, 0)
    (d / "invoices.csv").write_text(flagged.replace('"Yes","11/01/2026","Yes"', '"No","","No"', 1))  # INV-0001 clears
    cleared = merge(ledger, config, [stage(ledger, config, src(), AS_OF)["batch_id"]], AS_OF)["batches"][0]["counts"]
    assert (cleared["dispute_holds_closed"], cleared["payment_plan_holds_closed"]) == (1, 1)
    assert (cleared["dispute_holds_opened"], cleared["payment_plan_holds_opened"]) == (0, 0)
    with ledger.connect() as conn:
        open_holds = conn.execute(
            text(
                "SELECT i.invoice_ref, h.hold_type, h.note FROM holds h JOIN invoices i ON i.id = h.invoice_id WHERE h.end_date IS NULL ORDER BY 1, 2, 3"
            )
        ).all()
    assert [tuple(r) for r in open_holds] == [
        ("INV-0001", "dispute", "collector"),
        ("INV-0002", "dispute", "ingest:erp_csv"),
        ("INV-0002", "payment_plan", "ingest:erp_csv"),
    ]


def _billing_rows(conn_exec) -> None:
    conn_exec("CREATE TABLE ar_invoices (" + ", ".join(f"{k} TEXT" for k in INV) + ")")
    conn_exec("CREATE TABLE ar_payments (" + ", ".join(f"{k} TEXT" for k in PAY) + ")")
    conn_exec("CREATE TABLE ar_activities (" + ", ".join(f"{k} TEXT" for k in ACT) + ")")


def _values(row: dict) -> list:
    return [(1 if v else 0) if isinstance(v, bool) else v for v in row.values()]


def test_sql_source_sqlite_file(ledger, tmp_path) -> None:
    db = tmp_path / "source.db"
    con = sqlite3.connect(db)
    _billing_rows(con.execute)
    for table, row in (("ar_invoices", INV), ("ar_invoices", INV2), ("ar_payments", PAY), ("ar_activities", ACT)):
        con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", _values(row))
    con.commit()
    con.close()
    config = cfg()
    s = stage(ledger, config, build_source(config.source("billing_db"), url=f"sqlite:///{db}"), AS_OF)
    assert (s["rows_read"], s["rows_accepted"]) == (4, 4)
    m = merge(ledger, config, [s["batch_id"]], AS_OF)["batches"][0]
    assert m["counts"]["dispute_holds_opened"] == 1 and m["counts"]["allocations_inserted"] == 1
    gl_ties(ledger)


def test_sql_source_postgres_with_typed_columns(pg_admin, ledger) -> None:
    schema = f"src_{uuid.uuid4().hex[:8]}"
    with pg_admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
        c.execute(
            text(
                f'CREATE TABLE "{schema}".ar_invoices (entity text, invoice_ref text, customer_ref text, customer_name text, parent_customer_ref text, segment text, invoice_date date, due_date date, currency text, amount numeric(20,2), open_balance numeric(20,2), fx_rate numeric, disputed boolean, dispute_since date, payment_plan boolean, bankrupt boolean, transferred_to_parent boolean, description text)'
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
                f"""INSERT INTO "{schema}".ar_invoices VALUES ('US01','INV-1','C1','N',NULL,'x','2025-09-15','2025-10-15','USD',45000.00,45000.00,NULL,false,NULL,false,false,false,NULL), ('US01','INV-LATE','C1','N',NULL,'x','2026-12-01','2026-12-31','USD',5,5,NULL,false,NULL,false,false,false,NULL)"""
            )
        )
    try:
        config = cfg()
        url = schema_url(PG_URL, schema)
        s = stage(ledger, config, build_source(config.source("billing_db"), url=url), AS_OF)
        # The parameterised query (invoice_date <= :as_of) left the future invoice out.
        assert s["datasets"]["invoices"] == {
            "read": 1,
            "accepted": 1,
            "quarantined": 0,
            "filtered": 0,
            "totals": {"amount": "45000.0000", "open_balance": "45000.0000"},
        }
    finally:
        with pg_admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def test_sql_source_down_is_a_named_error(ledger) -> None:
    config = cfg()
    src = build_source(config.source("billing_db"), url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(InputError, match=r"source database .* failed") as err:
        stage(ledger, config, src, AS_OF)
    assert err.value.source == "billing_db" and err.value.file == "invoices query"


class _Api:
    """A real HTTP server on 127.0.0.1 serving pages, with scripted failures per path."""

    def __init__(self, pages: dict[str, bytes], failures: dict[str, list[int]] | None = None, delay: float = 0) -> None:
        self.pages, self.delay, self.hits = pages, delay, []
        self.failures = {k: list(v) for k, v in (failures or {}).items()}  # consumed per request
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                api.hits.append((path, self.headers.get("Authorization")))
                if api.delay:
                    time.sleep(api.delay)
                fails = api.failures.get(path) or []
                if fails:
                    code = fails.pop(0)
                    self.send_response(code)
                    self.end_headers()
                    return
                body = api.pages.get(path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pages(dataset: str, rows: list[dict], per_page: int) -> dict[str, bytes]:
    chunks = [rows[i : i + per_page] for i in range(0, len(rows), per_page)] or [[]]
    out = {}
    for k, chunk in enumerate(chunks, start=1):
        nxt = f"page-{k + 1:04d}.json" if k < len(chunks) else None
        out[f"{dataset}/page-{k:04d}.json"] = json.dumps(
            {"data": chunk, "page": k, "total_pages": len(chunks), "total": len(rows), "next": nxt}
        ).encode()
    return out


def _http_cfg(retries: int = 2, timeout: float = 5.0):
    base = cfg()
    body = base.source("billing_api").model_dump(exclude={"name"})
    body.update(retries=retries, backoff_s=0.01, timeout_s=timeout)
    return source_config.parse(
        {
            "version": "t",
            "entities": {k: v.model_dump() for k, v in base.entities.items()},
            "sources": {"billing_api": body},
        }
    )


def test_http_source_paginates_retries_and_sends_auth(ledger) -> None:
    invs = [{**INV, "invoice_ref": f"INV-{i}"} for i in range(5)]
    pages = {**_pages("invoices", invs, 2), **_pages("payments", [], 2), **_pages("activities", [ACT], 2)}
    api = _Api(pages, failures={"invoices/page-0002.json": [503, 429]})
    try:
        config = _http_cfg()
        src = build_source(config.source("billing_api"), url=api.url, auth=HttpAuth("svc", "pw"))
        s = stage(ledger, config, src, AS_OF)
        assert s["datasets"]["invoices"]["accepted"] == 5
        assert [f["name"] for f in s["files"] if f["dataset"] == "invoices"] == [
            f"invoices/page-000{k}.json" for k in (1, 2, 3)
        ]
        assert sum(1 for p, _ in api.hits if p == "invoices/page-0002.json") == 3  # 503, 429, then 200
        assert all(a and a.startswith("Basic ") for _, a in api.hits)
    finally:
        api.close()


@pytest.mark.parametrize(
    ("page", "failures", "match"),
    [
        (b'{"data": [], "next": null}', {"invoices/page-0001.json": [500, 500, 500]}, "HTTP 500 .* after 3 attempt"),
        ((CORPUS / "api_garbage.json").read_bytes(), {}, "not valid JSON"),
        ((CORPUS / "api_no_data_key.json").read_bytes(), {}, 'no "data" list'),
        (b"", {"invoices/page-0001.json": [401]}, "HTTP 401 .*not retried"),
    ],
    ids=["http_500", "garbage_json", "no_data_key", "http_401"],
)
def test_http_failures_are_named_errors(ledger, page, failures, match) -> None:
    api = _Api({"invoices/page-0001.json": page}, failures=failures)
    try:
        config = _http_cfg()
        with pytest.raises(InputError, match=match) as err:
            stage(ledger, config, build_source(config.source("billing_api"), url=api.url), AS_OF)
        assert err.value.source == "billing_api" and err.value.file == "invoices/page-0001.json"
    finally:
        api.close()


def test_http_timeout_is_retried_then_named(make_ledger) -> None:
    engine = make_ledger("sqlite")
    api = _Api({"invoices/page-0001.json": b'{"data": [], "next": null}'}, delay=0.5)
    try:
        config = _http_cfg(retries=1, timeout=0.1)
        with pytest.raises(InputError, match=re.escape("timed out after 0.1 s after 2 attempt")):
            stage(engine, config, build_source(config.source("billing_api"), url=api.url), AS_OF)
    finally:
        api.close()


def test_http_records_that_are_not_objects_are_quarantined(make_ledger) -> None:
    engine = make_ledger("sqlite")
    pages = {"invoices/page-0001.json": json.dumps({"data": [INV, 42], "next": None}).encode()}
    pages.update(_pages("payments", [], 1))
    pages.update(_pages("activities", [], 1))
    api = _Api(pages)
    try:
        config = _http_cfg()
        s = stage(engine, config, build_source(config.source("billing_api"), url=api.url), AS_OF)
        assert s["quarantine_reasons"] == {"not_an_object": 1}
        assert s["datasets"]["invoices"]["read"] == 2
    finally:
        api.close()
