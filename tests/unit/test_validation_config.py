"""Validation configuration and the check registry (no database, no GX run)."""

from __future__ import annotations

import sqlite3
from datetime import date
from decimal import Decimal

import pytest

from writeoffs.buckets import DEFAULT_BUCKETS, bucket_case_text, bucket_of, make_buckets
from writeoffs.errors import ConfigError
from writeoffs.validation.checks import CHECKS, by_name
from writeoffs.validation.config import DEFAULT_PATH, load, parse
from writeoffs.validation.rules import AtLeast, Between, InSet, sql_literal


def test_committed_config_loads_and_keeps_structure_blocking() -> None:
    cfg = load(DEFAULT_PATH)
    assert cfg.severity_of("invoices.control_row_count", "warning") == "blocking"
    assert cfg.severity_of("aging.tie_out_gl", "warning") == "blocking"
    assert cfg.severity_of("payments.customer_known", "blocking") == "warning"
    assert cfg.tie_out.tolerance == Decimal("0.01")


@pytest.mark.parametrize(
    ("severity", "check", "expected"),
    [
        (
            {"invoices.currency_iso4217": "blocking", "*.currency_iso4217": "warning"},
            "invoices.currency_iso4217",
            "blocking",
        ),  # exact name beats a pattern
        ({"*": "warning", "invoices.*": "blocking"}, "invoices.amount_nonnegative", "blocking"),  # longer pattern
        ({"payments.*": "blocking"}, "invoices.amount_nonnegative", "warning"),  # no match: the built-in default
    ],
)
def test_severity_resolution(severity: dict, check: str, expected: str) -> None:
    assert parse({"severity": severity}).severity_of(check, "warning") == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"severity": {"invoices.no_such_check": "warning"}}, "match no check"),
        ({"severity": {"invoices.amount_nonnegative": "fatal"}}, "severity"),
        ({"tie_out": {"tolerance": 0.01}}, "quoted string"),
        ({"max_quarantined_fraction": "1.5"}, "between 0 and 1"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"fast_path_min_rows": -1}, "fast_path_min_rows"),
    ],
)
def test_bad_config_is_refused(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(data)


def test_missing_explicit_config_file_is_an_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read"):
        load(tmp_path / "nope.yaml")


def test_a_configured_file_that_is_missing_is_an_error_not_the_defaults(tmp_path, monkeypatch) -> None:
    """Fail closed: $WRITEOFFS_VALIDATION_CONFIG naming a file that is not there used to mean the built-in
    defaults, silently."""
    monkeypatch.setenv("WRITEOFFS_VALIDATION_CONFIG", str(tmp_path / "typo.yaml"))
    with pytest.raises(ConfigError, match=r"typo.yaml: cannot read"):
        load()


def test_a_deployment_without_the_committed_file_is_refused_not_given_defaults(tmp_path, monkeypatch) -> None:
    """Nothing named and the committed ``include/config/validation.yaml`` missing (a deployment that left it out):
    refused like every other configuration file, never silently the built-in severities."""
    import writeoffs.validation.config as config

    monkeypatch.delenv("WRITEOFFS_VALIDATION_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "config" / "validation.yaml")
    with pytest.raises(ConfigError, match=r"validation config .*validation\.yaml: cannot read"):
        config.load()


def test_registry_names_fit_the_quarantine_reason_column() -> None:
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names))
    assert all(len(c.rule_name) <= 32 for c in CHECKS)  # ingest_quarantine.reason is VARCHAR(32)
    assert by_name("invoices.unique_invoice").column == "invoice_ref"


def _eval(predicate: str, row: dict) -> bool:
    """Evaluate a rendered predicate on one row in SQLite (alias ``s``)."""
    db = sqlite3.connect(":memory:")
    cols = ", ".join(f"? AS {k}" for k in row)
    sql = f"SELECT CASE WHEN {predicate} THEN 1 ELSE 0 END FROM (SELECT {cols}) s"
    return bool(db.execute(sql, [str(v) if isinstance(v, (Decimal, date)) else v for v in row.values()]).fetchone()[0])


@pytest.mark.parametrize(
    ("rule", "row", "offends"),
    [
        (Between("amount", min_value=Decimal(0)), {"amount": -1}, True),
        (Between("amount", min_value=Decimal(0)), {"amount": 0}, False),
        (Between("amount", min_value=Decimal(0)), {"amount": None}, False),  # NULLs are not_null's business
        (Between("d", max_value=date(2026, 11, 24)), {"d": "2026-11-25"}, True),
        (Between("d", max_value=date(2026, 11, 24)), {"d": "2026-11-24"}, False),
        (AtLeast("amount", "open_balance"), {"amount": 10, "open_balance": 11}, True),
        (AtLeast("amount", "open_balance"), {"amount": 10, "open_balance": 10}, False),
        (AtLeast("amount", "open_balance"), {"amount": 10, "open_balance": None}, False),
        (InSet("currency", ("USD", "EUR")), {"currency": "XXX"}, True),
        (InSet("currency", ("USD", "EUR")), {"currency": "EUR"}, False),
    ],
)
def test_predicates_select_exactly_the_offending_rows(rule, row: dict, offends: bool) -> None:
    assert _eval(rule.predicate("s"), row) is offends


def test_sql_literal_escapes_and_refuses_non_finite() -> None:
    assert sql_literal("O'Brien") == "'O''Brien'"
    assert sql_literal(Decimal("1.50")) == "1.50"
    with pytest.raises(ValueError):
        sql_literal(Decimal("NaN"))


@pytest.mark.parametrize("buckets", [DEFAULT_BUCKETS, make_buckets((10, 20))])
def test_bucket_case_text_agrees_with_bucket_of(buckets) -> None:
    db = sqlite3.connect(":memory:")
    for dpd in range(-5, 400):
        got = db.execute(f"SELECT {bucket_case_text('?', buckets)}", [dpd] * (len(buckets) - 1)).fetchone()[0]
        assert got == bucket_of(dpd, buckets), dpd
