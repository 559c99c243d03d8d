"""The sample generator: deterministic, shaped like a real AR ledger, and faithful to the ingestion contract."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from writeoffs.buckets import bucket_of
from writeoffs.errors import InputError
from writeoffs.money import to_decimal
from writeoffs.sample import SampleSpec, parse_formats, write_sample
from writeoffs.sample.generator import BUCKET_LABELS, BUCKET_WEIGHTS, DISPUTE_RATE
from writeoffs.sample.render import (
    ACTIVITY_FIELDS,
    ACTIVITY_HEADERS,
    INVOICE_FIELDS,
    INVOICE_HEADERS,
    PAYMENT_FIELDS,
    PAYMENT_HEADERS,
)

AS_OF = date(2026, 11, 24)
BOM = b"\xef\xbb\xbf"
KINDS = ("invoices", "payments", "activities")


def _amount(text: str) -> Decimal:
    """An amount as the sample writes it (US format: ',' groups thousands, '.' is the decimal point)."""
    return to_decimal(text.replace(",", ""))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _csv(out: Path, kind: str) -> list[dict[str, str]]:
    with open(out / "erp_export" / f"{kind}.csv", encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _us(text: str) -> date:
    return datetime.strptime(text, "%m/%d/%Y").date()


def _api(out: Path, kind: str) -> tuple[list[dict], list[dict]]:
    """Follow the ``next`` chain from page 1; returns (pages' envelopes, all rows)."""
    folder = out / "api" / kind
    pages, rows, name = [], [], "page-0001.json"
    while name is not None:
        page = json.loads((folder / name).read_text(encoding="utf-8"))
        pages.append({k: v for k, v in page.items() if k != "data"})
        rows.extend(page["data"])
        name = page["next"]
    return pages, rows


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample20k")
    write_sample(SampleSpec(invoices=20_000, seed=42, as_of=AS_OF), out)
    return out


@pytest.fixture(scope="module")
def invoices_csv(sample: Path) -> list[dict[str, str]]:
    return _csv(sample, "invoices")


@pytest.fixture(scope="module")
def payments_csv(sample: Path) -> list[dict[str, str]]:
    return _csv(sample, "payments")


@pytest.fixture(scope="module")
def activities_csv(sample: Path) -> list[dict[str, str]]:
    return _csv(sample, "activities")


# --- determinism --------------------------------------------------------------------------------------------


def test_same_seed_and_size_give_byte_identical_files(tmp_path: Path) -> None:
    spec = SampleSpec(invoices=3_000, seed=7, as_of=AS_OF)
    write_sample(spec, tmp_path / "a", page_size=250)
    write_sample(spec, tmp_path / "b", page_size=250)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert "source.db" in a and "erp_export/invoices.csv" in a and "api/activities/page-0001.json" in a
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    write_sample(SampleSpec(invoices=3_000, seed=7, as_of=AS_OF), tmp_path / "a", ["csv"])
    write_sample(SampleSpec(invoices=3_000, seed=8, as_of=AS_OF), tmp_path / "b", ["csv"])
    for kind in KINDS:
        name = f"erp_export/{kind}.csv"
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), kind


def test_regenerating_into_the_same_directory_leaves_no_stale_pages(tmp_path: Path) -> None:
    write_sample(SampleSpec(invoices=3_000, seed=7, as_of=AS_OF), tmp_path, ["api"], page_size=100)
    write_sample(SampleSpec(invoices=3_000, seed=7, as_of=AS_OF), tmp_path, ["api"], page_size=1_000)
    assert sorted(p.name for p in (tmp_path / "api" / "invoices").iterdir()) == [
        "page-0001.json",
        "page-0002.json",
        "page-0003.json",
    ]


def test_spec_and_formats_are_validated() -> None:
    with pytest.raises(InputError, match="invoices must be between"):
        SampleSpec(invoices=10)
    with pytest.raises(InputError, match="seed"):
        SampleSpec(seed=-1)
    with pytest.raises(InputError, match="unknown format"):
        parse_formats("csv,parquet")
    assert parse_formats("api, csv,api") == ("api", "csv")


# --- CSV contract -------------------------------------------------------------------------------------------


def test_csv_files_have_bom_quoted_erp_headers(sample: Path) -> None:
    for kind, headers in (
        ("invoices", INVOICE_HEADERS),
        ("payments", PAYMENT_HEADERS),
        ("activities", ACTIVITY_HEADERS),
    ):
        raw = (sample / "erp_export" / f"{kind}.csv").read_bytes()
        assert raw.startswith(BOM), kind
        first_line = raw[len(BOM) :].split(b"\r\n", 1)[0].decode("utf-8")
        assert first_line == ",".join(f'"{h}"' for h in headers)
    assert INVOICE_HEADERS[:3] == ("Company", "Invoice No", "Customer No")
    assert len(INVOICE_HEADERS) == len(INVOICE_FIELDS) and len(PAYMENT_HEADERS) == len(PAYMENT_FIELDS)


def test_csv_values_follow_the_erp_conventions(invoices_csv, payments_csv, activities_csv) -> None:
    amount = re.compile(r"^\d{1,3}(,\d{3})*\.\d{2}$")
    us_date = re.compile(r"^\d{2}/\d{2}/\d{4}$")
    for row in invoices_csv:
        assert amount.match(row["Amount"]) and amount.match(row["Open Balance"]), row
        assert us_date.match(row["Invoice Date"]) and us_date.match(row["Due Date"]), row
        for flag in ("Disputed", "Payment Plan", "Bankrupt", "Transferred To Parent"):
            assert row[flag] in ("Yes", "No")
        assert (row["Dispute Since"] != "") == (row["Disputed"] == "Yes")
        assert re.match(r"^\d\.\d{4}$", row["FX Rate"])
    assert {r["Company"] for r in invoices_csv} == {"US01", "EU01"}
    for row in payments_csv:
        assert (
            amount.match(row["Amount"]) and amount.match(row["Applied Amount"]) and us_date.match(row["Payment Date"])
        )
    assert {r["Activity"] for r in activities_csv} == {
        "Call",
        "Email",
        "Demand Letter",
        "Agency Placement",
        "Legal Action",
    }


def test_amounts_are_quoted_in_the_raw_file(sample: Path) -> None:
    # Thousands separators mean amounts must be quoted: ingestion must not split "45,000.00" into two fields.
    raw = (sample / "erp_export" / "invoices.csv").read_bytes().decode("utf-8-sig")
    assert (
        '"US01","INV-WORKED-45000","C-NORTHWIND","Northwind IT Services","","it_services",'
        '"09/24/2025","10/24/2025","USD","45,000.00","45,000.00","1.0000","No","","No","No","No",'
        '"IT consulting services"\r\n' in raw
    )


def test_control_totals_equal_the_sum_of_the_rows(sample: Path, invoices_csv, payments_csv, activities_csv) -> None:
    control = json.loads((sample / "erp_export" / "control.json").read_text())
    assert control["as_of"] == "2026-11-24"
    inv = control["invoices"]
    assert inv["rows"] == len(invoices_csv) == 20_000
    assert Decimal(inv["amount_total"]) == sum(_amount(r["Amount"]) for r in invoices_csv)
    assert Decimal(inv["open_balance_total"]) == sum(_amount(r["Open Balance"]) for r in invoices_csv)
    assert control["payments"]["rows"] == len(payments_csv)
    assert Decimal(control["payments"]["amount_total"]) == sum(_amount(r["Applied Amount"]) for r in payments_csv)
    assert control["activities"]["rows"] == len(activities_csv)
    # Decimal strings, never floats.
    assert all(isinstance(inv[k], str) for k in ("amount_total", "open_balance_total"))


# --- shape --------------------------------------------------------------------------------------------------


def test_aging_buckets_follow_the_design(invoices_csv) -> None:
    dpd = [(AS_OF - _us(r["Due Date"])).days for r in invoices_csv]
    share = Counter(bucket_of(d) for d in dpd)
    for label, weight in zip(BUCKET_LABELS, BUCKET_WEIGHTS, strict=True):
        assert abs(share[label] / len(dpd) - weight) < 0.025, (label, share[label] / len(dpd), weight)
    assert share["current"] == max(share.values())  # most invoices are current
    assert max(dpd) > 730  # a long tail beyond two years
    assert all(_us(r["Invoice Date"]) <= AS_OF for r in invoices_csv)


def test_about_three_percent_disputed(invoices_csv) -> None:
    disputed = [r for r in invoices_csv if r["Disputed"] == "Yes"]
    assert abs(len(disputed) / len(invoices_csv) - DISPUTE_RATE) < 0.006
    assert all(_amount(r["Open Balance"]) > 0 for r in disputed)  # a disputed invoice is never fully paid
    assert all(_us(r["Invoice Date"]) <= _us(r["Dispute Since"]) <= AS_OF for r in disputed)


def test_entities_currencies_and_fx(invoices_csv) -> None:
    by_entity = defaultdict(set)
    for r in invoices_csv:
        by_entity[r["Company"]].add(r["Currency"])
    assert by_entity == {"US01": {"USD"}, "EU01": {"EUR", "GBP"}}
    gbp_rates = {Decimal(r["FX Rate"]) for r in invoices_csv if r["Currency"] == "GBP"}
    assert len(gbp_rates) > 5 and all(Decimal("1.12") <= x <= Decimal("1.19") for x in gbp_rates)
    assert {r["FX Rate"] for r in invoices_csv if r["Currency"] != "GBP"} == {"1.0000"}


def test_parent_child_and_transfers(invoices_csv, payments_csv) -> None:
    customers = {r["Customer No"]: r for r in invoices_csv}
    children = {c: r["Parent Customer No"] for c, r in customers.items() if r["Parent Customer No"]}
    assert len(children) >= 6
    for child, parent in children.items():
        assert parent in customers and not customers[parent]["Parent Customer No"]
        assert customers[parent]["Company"] == customers[child]["Company"]
    transferred = [r for r in invoices_csv if r["Transferred To Parent"] == "Yes"]
    assert transferred and all(r["Customer No"] in children for r in transferred)
    partial = [r for r in transferred if 0 < _amount(r["Open Balance"]) < _amount(r["Amount"])]
    assert partial, "some transferred balances are partly paid by the parent"
    payers = {(p["Invoice No"], p["Customer No"]) for p in payments_csv}
    for r in partial:
        assert (r["Invoice No"], r["Parent Customer No"]) in payers


def test_payments_explain_every_paid_amount(invoices_csv, payments_csv) -> None:
    applied: dict[str, Decimal] = defaultdict(Decimal)
    per_payment: dict[str, list[dict[str, str]]] = defaultdict(list)
    for p in payments_csv:
        applied[p["Invoice No"]] += _amount(p["Applied Amount"])
        per_payment[p["Payment No"]].append(p)
    invoice_dates = {r["Invoice No"]: _us(r["Invoice Date"]) for r in invoices_csv}
    for r in invoices_csv:
        assert applied.get(r["Invoice No"], Decimal(0)) == _amount(r["Amount"]) - _amount(r["Open Balance"])
    fully = [r for r in invoices_csv if _amount(r["Open Balance"]) == 0]
    partly = [r for r in invoices_csv if 0 < _amount(r["Open Balance"]) < _amount(r["Amount"])]
    assert len(fully) > 1_000 and len(partly) > 1_000
    multi = [rows for rows in per_payment.values() if len(rows) > 1]
    assert multi, "some payments are applied to two invoices"
    for rows in per_payment.values():
        assert len({(r["Amount"], r["Payment Date"], r["Customer No"]) for r in rows}) == 1
        assert _amount(rows[0]["Amount"]) == sum(_amount(r["Applied Amount"]) for r in rows)
        for r in rows:
            assert invoice_dates[r["Invoice No"]] <= _us(r["Payment Date"]) <= AS_OF


def test_special_customers_present(invoices_csv, activities_csv) -> None:
    bankrupt = {r["Customer No"] for r in invoices_csv if r["Bankrupt"] == "Yes"}
    assert len(bankrupt) >= 2
    claims = {a["Customer No"] for a in activities_csv if a["Outcome"] == "bankruptcy: proof of claim filed"}
    assert claims == bankrupt
    dissolved = {a["Customer No"] for a in activities_csv if a["Outcome"] == "company dissolved"}
    assert len(dissolved) >= 2 and all(
        a["Invoice No"] == "" for a in activities_csv if a["Outcome"] == "company dissolved"
    )
    assert sum(r["Payment Plan"] == "Yes" for r in invoices_csv) > 50


def test_collection_effort_grows_with_age(invoices_csv, activities_csv) -> None:
    per_invoice = Counter(a["Invoice No"] for a in activities_csv if a["Invoice No"])
    open_by_bucket: dict[str, list[int]] = defaultdict(list)
    for r in invoices_csv:
        if _amount(r["Open Balance"]) > 0 and r["Invoice No"] != "INV-WORKED-45000":
            open_by_bucket[bucket_of((AS_OF - _us(r["Due Date"])).days)].append(per_invoice[r["Invoice No"]])
    means = [sum(v) / len(v) for b in BUCKET_LABELS if (v := open_by_bucket[b])]
    assert means[0] == 0  # nobody chases an invoice that is not due
    assert means == sorted(means), means
    agency = [a for a in activities_csv if a["Activity"] == "Agency Placement"]
    ended = [a for a in agency if a["End Date"]]
    assert ended and len(ended) < len(agency)  # some placements have ended, some are still running
    assert all(_us(a["Date"]) < _us(a["End Date"]) <= AS_OF for a in ended)
    assert any(a["Activity"] == "Legal Action" and a["Invoice No"] for a in activities_csv)
    assert all(_us(a["Date"]) <= AS_OF for a in activities_csv)


def test_worked_example_is_exact(invoices_csv, payments_csv, activities_csv) -> None:
    (inv,) = [r for r in invoices_csv if r["Invoice No"] == "INV-WORKED-45000"]
    assert inv["Customer No"] == "C-NORTHWIND" and inv["Customer Name"] == "Northwind IT Services"
    assert (inv["Company"], inv["Segment"], inv["Currency"]) == ("US01", "it_services", "USD")
    assert inv["Amount"] == inv["Open Balance"] == "45,000.00"
    invoice_date = _us(inv["Invoice Date"])
    assert invoice_date == date(2025, 9, 24)  # 14 months before 2026-11-24
    assert _us(inv["Due Date"]) - invoice_date == timedelta(days=30)
    assert (inv["Disputed"], inv["Payment Plan"], inv["Bankrupt"], inv["Transferred To Parent"]) == ("No",) * 4
    assert not [p for p in payments_csv if p["Invoice No"] == "INV-WORKED-45000"]
    acts = [a for a in activities_csv if a["Invoice No"] == "INV-WORKED-45000"]
    kinds = Counter(a["Activity"] for a in acts)
    assert kinds["Call"] + kinds["Email"] == 12 and kinds["Demand Letter"] == 3 and kinds["Agency Placement"] == 1
    assert len(acts) == 16
    (placement,) = [a for a in acts if a["Activity"] == "Agency Placement"]
    assert (_us(placement["End Date"]) - _us(placement["Date"])).days == 90
    assert placement["Outcome"] == "unsuccessful" and _us(placement["End Date"]) < AS_OF
    assert all(a["Customer No"] == "C-NORTHWIND" for a in acts)


def test_worked_example_moves_with_as_of(tmp_path: Path) -> None:
    write_sample(SampleSpec(invoices=200, seed=1, as_of=date(2027, 3, 31)), tmp_path, ["csv"])
    (inv,) = [r for r in _csv(tmp_path, "invoices") if r["Invoice No"] == "INV-WORKED-45000"]
    assert _us(inv["Invoice Date"]) == date(2026, 1, 31)


# --- SQLite source and API pages carry the same rows --------------------------------------------------------


def _canonical_from_csv(row: dict[str, str], fields: tuple[str, ...], headers: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for field, header in zip(fields, headers, strict=True):
        value = row[header]
        if value == "":
            out[field] = None
        elif field.endswith("date") or field == "dispute_since":
            out[field] = _us(value).isoformat()
        elif field in ("amount", "open_balance", "applied_amount"):
            out[field] = format(_amount(value), "f")
        elif value in ("Yes", "No"):
            out[field] = value == "Yes"
        elif field == "activity_type":
            out[field] = {"Call": "contact_attempt", "Email": "contact_attempt"}.get(
                value, value.lower().replace(" ", "_")
            )
        else:
            out[field] = value
    return out


def test_sqlite_source_has_canonical_columns_and_the_csv_rows(
    sample: Path, invoices_csv, payments_csv, activities_csv
) -> None:
    db = sqlite3.connect(sample / "source.db")
    try:
        for table, fields, headers, rows in (
            ("ar_invoices", INVOICE_FIELDS, INVOICE_HEADERS, invoices_csv),
            ("ar_payments", PAYMENT_FIELDS, PAYMENT_HEADERS, payments_csv),
            ("ar_activities", ACTIVITY_FIELDS, ACTIVITY_HEADERS, activities_csv),
        ):
            assert tuple(r[1] for r in db.execute(f"PRAGMA table_info({table})")) == fields
            got = db.execute(f"SELECT * FROM {table}").fetchall()
            assert len(got) == len(rows)
            expected = [_canonical_from_csv(r, fields, headers) for r in rows]
            as_dicts = [
                {f: (bool(v) if isinstance(v, int) else v) for f, v in zip(fields, g, strict=True)} for g in got
            ]
            assert as_dicts == expected, table
        flags = db.execute("SELECT DISTINCT disputed FROM ar_invoices ORDER BY 1").fetchall()
        assert flags == [(0,), (1,)]
    finally:
        db.close()


def test_api_pages_chain_and_match_the_csv(sample: Path, invoices_csv, payments_csv, activities_csv) -> None:
    for kind, fields, headers, rows in (
        ("invoices", INVOICE_FIELDS, INVOICE_HEADERS, invoices_csv),
        ("payments", PAYMENT_FIELDS, PAYMENT_HEADERS, payments_csv),
        ("activities", ACTIVITY_FIELDS, ACTIVITY_HEADERS, activities_csv),
    ):
        pages, data = _api(sample, kind)
        n = len(pages)
        assert n == -(-len(rows) // 1_000)
        assert [p["page"] for p in pages] == list(range(1, n + 1))
        assert {(p["total_pages"], p["total"]) for p in pages} == {(n, len(rows))}
        assert pages[0].get("next") == ("page-0002.json" if n > 1 else None)
        assert len(list((sample / "api" / kind).iterdir())) == n
        assert data == [_canonical_from_csv(r, fields, headers) for r in rows], kind
    first = json.loads((sample / "api" / "invoices" / "page-0001.json").read_text())
    assert list(first) == ["data", "page", "total_pages", "total", "next"]
    assert first["data"][0]["amount"] == "45000.00" and first["data"][0]["disputed"] is False


def test_api_page_size_is_a_knob(tmp_path: Path) -> None:
    write_sample(SampleSpec(invoices=250, seed=3, as_of=AS_OF), tmp_path, ["api"], page_size=100)
    pages, data = _api(tmp_path, "invoices")
    assert [
        len(json.loads((tmp_path / "api" / "invoices" / f"page-000{k}.json").read_text())["data"]) for k in (1, 2, 3)
    ] == [100, 100, 50]
    assert len(pages) == 3 and len(data) == 250 and pages[-1]["next"] is None
