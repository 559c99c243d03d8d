"""Computed fields and row filters of a source mapping (writeoffs.ingest.derive), Airflow- and database-free.

Table-driven: each case is a mapping fragment and a few source rows; the expected outcome per row is
accepted with given values, quarantined with (field, reason), or filtered. ``accepted + quarantined + filtered``
must equal the rows read in every case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from writeoffs.errors import ConfigError
from writeoffs.ingest import config as source_config
from writeoffs.ingest.sources import RawChunk
from writeoffs.ingest.validate import Context, validate_chunk

AS_OF = date(2026, 11, 24)
BASE = {"Ref": "INV-1", "Cust": "C1", "Issued": "2026-09-01", "Due": "2026-10-01", "Amount": "100.00"}
COLUMNS = {
    "Ref": "invoice_ref",
    "Cust": "customer_ref",
    "Issued": "invoice_date",
    "Due": "due_date",
    "Amount": "amount",
}
SETTLED_OPEN = {
    "if": {"date": "settled", "op": "<=", "than": "as_of", "if_empty": False},
    "then": {"const": "0"},
    "else": {"copy": "amount"},
}


def _config(**dataset: Any) -> Any:
    body = {
        "kind": "file",
        "location": "/nowhere",
        "format": "csv",
        "entity": "US01",
        "default_currency": "USD",
        "datasets": {"invoices": {"file": "x.csv", "columns": dict(COLUMNS), **dataset}},
    }
    return source_config.parse({"version": "t", "sources": {"s": body}}).source("s")


def _run(cfg: Any, rows: list[dict[str, str | None]]):
    names = sorted({k for r in rows for k in r})
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    chunk = RawChunk("invoices", "x.csv", table, pa.array(range(2, 2 + len(rows)), pa.int64()))
    v = validate_chunk(chunk, cfg, Context(functional={"US01": "USD"}, as_of=AS_OF))
    assert v.good.num_rows + len(v.bad) + v.filtered == v.read == len(rows)
    return v


@dataclass
class Case:
    name: str
    dataset: dict[str, Any]
    rows: list[dict[str, str | None]]
    accepted: dict[str, list[Any]] = field(default_factory=dict)  # field -> values of the accepted rows
    quarantined: list[tuple[int, str, str]] = field(default_factory=list)  # (row, field, reason)
    filtered: int = 0


SETTLED = {"inputs": {"Settled": {"name": "settled", "type": "date"}}, "computed": {"open_balance": SETTLED_OPEN}}
CASES = [
    Case(
        "settled before, on and after the business date, never settled",
        SETTLED,
        [
            {**BASE, "Settled": "2026-10-20"},
            {**BASE, "Settled": "2026-11-24"},
            {**BASE, "Settled": "2026-11-25"},
            {**BASE, "Settled": None},
        ],
        accepted={"open_balance": [Decimal(0), Decimal(0), Decimal(100), Decimal(100)]},
    ),
    Case(
        "an unreadable settled date is quarantined naming the input",
        SETTLED,
        [{**BASE, "Settled": "2026-13-45"}, {**BASE, "Settled": "0023-01-01"}],
        quarantined=[(2, "settled", "invalid_date"), (3, "settled", "implausible_date")],
    ),
    Case(
        "an empty value without if_empty is undecidable, not guessed",
        {
            "inputs": {"Settled": {"name": "settled", "type": "date"}},
            "computed": {
                "open_balance": {
                    "if": {"date": "settled", "op": "<=", "than": "as_of"},
                    "then": {"const": "0"},
                    "else": {"copy": "amount"},
                }
            },
        },
        [{**BASE, "Settled": None}, {**BASE, "Settled": "2026-01-01"}],
        accepted={"open_balance": [Decimal(0)]},
        quarantined=[(2, "settled", "undecidable")],
    ),
    Case(
        "arithmetic: open = amount - paid, exact; a negative or over-precise result is refused, never rounded",
        {
            "inputs": {"Paid": {"name": "paid", "type": "decimal"}},
            "computed": {"open_balance": {"sub": ["amount", "paid"]}},
        },
        [
            {**BASE, "Paid": "30.25"},
            {**BASE, "Paid": "100"},
            {**BASE, "Paid": "100.01"},
            {**BASE, "Paid": "0.001"},
            {**BASE, "Paid": "abc"},
        ],
        accepted={"open_balance": [Decimal("69.75"), Decimal(0)]},
        quarantined=[
            (4, "open_balance", "negative_amount"),
            (5, "open_balance", "too_many_decimals"),
            (6, "paid", "not_a_number"),
        ],
    ),
    Case(
        "add of several operands and a constant",
        {"computed": {"open_balance": {"add": ["amount", {"const": "-99.5"}, {"const": 1}]}}},
        [BASE],
        accepted={"open_balance": [Decimal("1.5")]},
    ),
    Case(
        "a computed value still meets the cross-checks (open balance above the amount)",
        {"computed": {"open_balance": {"add": ["amount", {"const": "1"}]}}},
        [BASE],
        quarantined=[(2, "open_balance", "balance_above_amount")],
    ),
    Case(
        "constants and copies: text, flag and date fields",
        {
            "computed": {
                "open_balance": {"copy": "amount"},
                "description": {"const": "from the AR history export"},
                "customer_name": {"copy": "customer_ref"},
                "disputed": {"const": True},
                "dispute_since": {"copy": "invoice_date"},
            }
        },
        [BASE],
        accepted={
            "description": ["from the AR history export"],
            "customer_name": ["C1"],
            "disputed": [True],
            "dispute_since": [date(2026, 9, 1)],
        },
    ),
    Case(
        "keep_if: rows issued after the business date are filtered and counted",
        {
            "computed": {"open_balance": {"copy": "amount"}},
            "keep_if": {"date": "invoice_date", "op": "<=", "than": "as_of"},
        },
        [
            BASE,
            {**BASE, "Issued": "2026-11-25", "Due": "2026-12-25"},
            {**BASE, "Issued": "2026-11-24", "Due": "2026-12-24"},
        ],
        accepted={"invoice_date": [date(2026, 9, 1), date(2026, 11, 24)]},
        filtered=1,
    ),
    Case(
        "a row whose filter field cannot be read is quarantined, never silently filtered",
        {
            "computed": {"open_balance": {"copy": "amount"}},
            "keep_if": {"date": "invoice_date", "op": "<=", "than": "as_of"},
        },
        [{**BASE, "Issued": "31/12/2026"}, {**BASE, "Issued": "2926-01-01", "Due": "2926-02-01"}],
        quarantined=[(2, "invoice_date", "invalid_date"), (3, "invoice_date", "implausible_date")],
    ),
    Case(
        "a filtered row's other problems do not count (it is not this date's data)",
        {
            "computed": {"open_balance": {"copy": "amount"}},
            "keep_if": {"date": "invoice_date", "op": "<=", "than": "as_of"},
        },
        [{**BASE, "Issued": "2026-12-01", "Due": "2026-12-31", "Amount": "abc"}],
        filtered=1,
    ),
    Case(
        "all / any / not and a comparison between two fields",
        {
            "inputs": {"Settled": {"name": "settled", "type": "date"}},
            "computed": {"open_balance": {"copy": "amount"}},
            "keep_if": {
                "all": [
                    {"date": "invoice_date", "op": "<=", "than": "as_of"},
                    {"not": {"date": "settled", "op": "<", "than": "invoice_date", "if_empty": False}},
                    {
                        "any": [
                            {"date": "settled", "op": ">", "than": "as_of"},
                            {"date": "due_date", "op": "<", "than": "as_of"},
                        ]
                    },
                ]
            },
        },
        [
            {**BASE, "Settled": "2026-08-01"},  # settled before issued: filtered
            {**BASE, "Settled": None},  # any(undecided, due < as_of = true) = true: kept
            {**BASE, "Settled": "2026-12-01"},  # kept
            {**BASE, "Due": "2026-12-01", "Settled": None},  # any(undecided, false): undecidable
        ],
        accepted={"invoice_ref": ["INV-1", "INV-1"]},
        quarantined=[(5, "settled", "undecidable")],
        filtered=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_mapping(case: Case) -> None:
    v = _run(_config(**case.dataset), case.rows)
    assert sorted((q.row, q.field, q.reason) for q in v.bad) == case.quarantined
    assert v.filtered == case.filtered
    for name, values in case.accepted.items():
        assert v.good[name].to_pylist() == values, name


def test_a_refused_computed_value_is_shown_in_the_message() -> None:
    v = _run(
        _config(
            inputs={"Paid": {"name": "paid", "type": "decimal"}}, computed={"open_balance": {"sub": ["amount", "paid"]}}
        ),
        [{**BASE, "Paid": "100.50"}],
    )
    assert "computed" in v.bad[0].message and "-0.5" in v.bad[0].message


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"computed": {"open_balance": "amount - paid"}}, "an expression is"),
        ({"computed": {"open_balance": {"const": 0.1}}}, "YAML float"),
        ({"computed": {"open_balance": {"sub": ["amount", 3]}}}, "as {const"),
        ({"computed": {"open_balance": {"sub": ["amount", "invoice_date"]}}}, "date where decimal"),
        ({"computed": {"amount": {"copy": "open_balance"}}}, "also mapped from a column"),
        ({"computed": {"open_balance": {"copy": "nope"}}}, "unknown field 'nope'"),
        ({"computed": {"open_balance": {"copy": "open_balance"}}}, "reads the field it computes"),
        ({"computed": {"dispute_since": {"const": "31/12/2026"}}}, "not an ISO date"),
        ({"computed": {"open_balance": {"const": "1,5"}}}, "not a quoted decimal"),
        ({"computed": {"entity": {"const": "US01"}}}, "source-level constant"),
        ({"computed": {"settled_on": {"copy": "due_date"}}}, "not a field of invoices"),
        (
            {"computed": {"open_balance": {"copy": "later"}, "description": {"const": "x"}}},
            "unknown field 'later'",
        ),
        ({"keep_if": {"date": "amount", "op": "<=", "than": "as_of"}}, "a date comparison needs dates"),
        ({"keep_if": {"date": "invoice_date", "op": "=<", "than": "as_of"}}, "op"),
        ({"keep_if": "invoice_date <= as_of"}, "a condition is"),
        ({"keep_if": {"date": "invoice_date", "op": "<=", "than": "as_of", "eval": "1"}}, "eval"),
        ({"inputs": {"X": {"name": "amount", "type": "decimal"}}}, "is a canonical field"),
        ({"inputs": {"X": {"name": "x", "type": "float"}}}, "type"),
    ],
)
def test_a_mapping_that_cannot_mean_anything_is_refused_at_load(dataset: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**dataset)


def test_a_header_column_named_like_a_computed_field_is_refused() -> None:
    from writeoffs.errors import InputError

    cfg = _config(computed={"open_balance": {"copy": "amount"}})
    with pytest.raises(InputError, match="a field has one source"):
        _run(cfg, [{**BASE, "open_balance": "5"}])


def test_an_input_column_missing_from_the_file_rejects_the_batch() -> None:
    from writeoffs.errors import InputError

    cfg = _config(**SETTLED)
    with pytest.raises(InputError, match=r"\['Settled'\] missing"):
        _run(cfg, [BASE])


@pytest.mark.parametrize(
    ("style", "adjustment", "amount"),
    [
        ("leading_minus", "-10.50", Decimal("189.50")),
        ("parentheses", "(10.50)", Decimal("189.50")),
        ("trailing_minus", "10.50-", Decimal("189.50")),
        ("parentheses", "10.50", Decimal("210.50")),
    ],
)
def test_negative_style_reads_a_signed_input_exactly(style: str, adjustment: str, amount: Decimal) -> None:
    columns = {k: v for k, v in COLUMNS.items() if v != "amount"}
    cfg = source_config.parse(
        {
            "version": "t",
            "sources": {
                "s": {
                    "kind": "file",
                    "location": "/nowhere",
                    "format": "csv",
                    "entity": "US01",
                    "default_currency": "USD",
                    "negative_style": style,
                    "datasets": {
                        "invoices": {
                            "file": "x.csv",
                            "columns": columns,
                            "inputs": {
                                "Gross": {"name": "gross", "type": "decimal"},
                                "Adj": {"name": "adjustment", "type": "decimal"},
                            },
                            "computed": {
                                "amount": {"add": ["gross", "adjustment"]},
                                "open_balance": {"copy": "amount"},
                            },
                        }
                    },
                }
            },
        }
    ).source("s")
    v = _run(cfg, [{**BASE, "Gross": "200.00", "Adj": adjustment}])
    assert not v.bad, v.bad
    assert v.good["amount"].to_pylist() == [amount]


@pytest.mark.parametrize("style", ["leading_minus", "parentheses", "trailing_minus"])
def test_typed_negative_numbers_from_parquet_are_read_in_any_style(tmp_path, style: str) -> None:
    # A database, JSON, XLSX or Parquet number carries its sign as a value, not as text: it is rendered in the
    # source's style before the one number reader reads it, so a typed -10.50 is never `ambiguous_sign`.
    import pyarrow.parquet as pq

    from writeoffs.ingest.sources import FileSource, _text

    assert (
        _text(Decimal("-10.50"), "%Y-%m-%d", style)
        == {
            "leading_minus": "-10.50",
            "parentheses": "(10.50)",
            "trailing_minus": "10.50-",
        }[style]
    )
    table = pa.table(
        {
            **{k: pa.array([v]) for k, v in BASE.items() if k != "Amount"},
            "Gross": pa.array([Decimal("200.00")], pa.decimal128(12, 2)),
            "Adj": pa.array([Decimal("-10.50")], pa.decimal128(12, 2)),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    cfg = source_config.parse(
        {
            "version": "t",
            "sources": {
                "s": {
                    "kind": "file",
                    "location": str(tmp_path),
                    "format": "parquet",
                    "entity": "US01",
                    "default_currency": "USD",
                    "negative_style": style,
                    "datasets": {
                        "invoices": {
                            "file": "x.parquet",
                            "columns": {k: v for k, v in COLUMNS.items() if v != "amount"},
                            "inputs": {
                                "Gross": {"name": "gross", "type": "decimal"},
                                "Adj": {"name": "adjustment", "type": "decimal"},
                            },
                            "computed": {
                                "amount": {"add": ["gross", "adjustment"]},
                                "open_balance": {"copy": "amount"},
                            },
                        }
                    },
                }
            },
        }
    ).source("s")
    (chunk,) = list(FileSource(cfg).read("invoices", AS_OF))
    v = validate_chunk(chunk, cfg, Context(functional={"US01": "USD"}, as_of=AS_OF))
    assert not v.bad, v.bad
    assert v.good["amount"].to_pylist() == [Decimal("189.50")]


@pytest.mark.parametrize(
    ("style", "gross", "reason"),
    [
        ("leading_minus", "not-a-number", "not_a_number"),
        ("leading_minus", "(1,000.00)", "ambiguous_sign"),
        ("parentheses", "(n/a)", "not_a_number"),
        ("parentheses", "1,000.00-", "ambiguous_sign"),
        ("trailing_minus", "-(5)", "ambiguous_sign"),
        ("trailing_minus", "5--", "ambiguous_sign"),
    ],
)
def test_only_a_would_be_number_is_an_ambiguous_sign(style: str, gross: str, reason: str) -> None:
    cfg = source_config.parse(
        {
            "version": "t",
            "sources": {
                "s": {
                    "kind": "file",
                    "location": "/nowhere",
                    "format": "csv",
                    "entity": "US01",
                    "default_currency": "USD",
                    "thousands_sep": ",",
                    "negative_style": style,
                    "datasets": {
                        "invoices": {
                            "file": "x.csv",
                            "columns": dict(COLUMNS),
                            "inputs": {"Gross": {"name": "gross", "type": "decimal"}},
                            "computed": {"open_balance": {"copy": "amount"}},
                        }
                    },
                }
            },
        }
    ).source("s")
    v = _run(cfg, [{**BASE, "Gross": gross}])
    assert [(q.field, q.reason) for q in v.bad] == [("gross", reason)]
