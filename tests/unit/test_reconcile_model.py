"""Reconciliation value objects, tolerances, report paths and rendering: no database, no Airflow."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from writeoffs.errors import ConfigError
from writeoffs.reconcile import CHECKS, Break, CheckOutcome, ReconResult, Tolerances, render_report, report_path_for

D = Decimal


@pytest.mark.parametrize(
    ("spec", "default", "per"),
    [
        (None, D(0), {}),
        ("", D(0), {}),
        ("USD=0.01", D(0), {"USD": D("0.01")}),
        ("usd=0.01, EUR=0.02 ,default=0.5", D("0.5"), {"USD": D("0.01"), "EUR": D("0.02")}),
        ({"default": "1", "JPY": 1}, D(1), {"JPY": D(1)}),
    ],
)
def test_tolerance_parsing(spec: object, default: Decimal, per: dict) -> None:
    tol = Tolerances.parse(spec)  # type: ignore[arg-type]
    assert (tol.default, dict(tol.per_currency)) == (default, per)
    assert tol.for_currency("GBP") == default
    for cur, amount in per.items():
        assert tol.for_currency(cur) == amount


@pytest.mark.parametrize("spec", ["USD", "USD=abc", "XXX=0.01", "USD=-0.01", "default=-1", {"USD": 0.01}])
def test_bad_tolerances_are_refused(spec: object) -> None:
    with pytest.raises(ConfigError):
        Tolerances.parse(spec)  # type: ignore[arg-type]


def test_break_difference_and_json() -> None:
    b = Break("subledger_vs_gl", "m", "US01", "USD", "1100", D("3000.0000"), D("8000.0000"), ({"id": 1},))
    assert b.difference == D("5000.0000")
    assert b.as_dict() == {
        "check": "subledger_vs_gl",
        "entity": "US01",
        "currency": "USD",
        "account": "1100",
        "expected": "3000.0000",
        "actual": "8000.0000",
        "difference": "5000.0000",
        "documents": [{"id": 1}],
        "message": "m",
    }
    assert Break("x", "no amounts").difference is None


def test_report_path_is_file_name_safe(tmp_path: Path) -> None:
    p = report_path_for(date(2026, 11, 24), "ledger_reconciliation:manual__2026-11-24T18:30:00+00:00", tmp_path)
    assert (
        p == tmp_path / "reports/reconciliation/2026-11-24-ledger_reconciliation_manual__2026-11-24T18_30_00_00_00.md"
    )
    assert report_path_for(date(2026, 11, 24), "///", tmp_path).name == "2026-11-24-run.md"


def _result(breaks: tuple[Break, ...]) -> ReconResult:
    outcomes = tuple(CheckOutcome(c, breaks if c.name == "recoveries" else (), 0.01) for c in CHECKS)
    return ReconResult(7, "k:1", date(2026, 11, 24), outcomes, Tolerances.parse("USD=0.01"), None, 0.5)


def test_report_and_headline_for_breaks() -> None:
    b = Break(
        "recoveries",
        "1 invoice(s) of US01 recovered more | than written off",
        "US01",
        "USD",
        None,
        D("45000.0000"),
        D("50000.0000"),
        ({"ref": "INV-WORKED-45000"},),
    )
    r = _result((b,))
    text = render_report(r)
    assert "**1 BREAK(S)**" in text and "| `recoveries` |" in text
    assert "| US01 | USD |  | 45000.0000 | 50000.0000 | 5000.0000 |" in text
    assert '"ref": "INV-WORKED-45000"' in text
    assert r.headline().startswith("Reconciliation 2026-11-24: 1 break(s) (recoveries 1).")
    s = r.summary()
    assert (s["break_count"], s["breaks_by_check"]["recoveries"], s["tolerance"]) == (
        1,
        1,
        {"default": "0", "USD": "0.01"},
    )


def test_report_for_a_clean_run() -> None:
    r = _result(())
    assert "**CLEAN**" in render_report(r) and "## Breaks" not in render_report(r)
    assert r.headline() == f"Reconciliation 2026-11-24: all {len(CHECKS)} checks clean (run k:1)"


@pytest.mark.parametrize(
    ("configured", "requested", "message"),
    [
        ("", "USD=1000000", "USD 1000000 > 0"),  # the attack: hide a break by widening the tolerance
        ("", "default=0.01", "default 0.01 > 0"),
        ("USD=0.01", "USD=0.02", "USD 0.02 > 0.01"),
        ("default=0.01", "EUR=0.05", "EUR 0.05 > 0.01"),
    ],
)
def test_a_run_param_cannot_loosen_the_configured_tolerance(configured: str, requested: str, message: str) -> None:
    with pytest.raises(ConfigError, match="may only tighten") as err:
        Tolerances.parse(configured).tightened_by(Tolerances.parse(requested))
    assert message in str(err.value)


def test_a_run_param_can_tighten_the_configured_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRITEOFFS_RECON_TOLERANCE", "USD=0.05,default=0.01")
    configured = Tolerances.configured()
    t = configured.tightened_by(Tolerances.parse("USD=0.001"))
    assert (t.for_currency("USD"), t.for_currency("EUR")) == (Decimal("0.001"), Decimal("0"))
    assert configured.tightened_by(Tolerances.parse("")).for_currency("USD") == Decimal("0")
    monkeypatch.delenv("WRITEOFFS_RECON_TOLERANCE")
    assert Tolerances.configured() == Tolerances()


@pytest.mark.parametrize(
    ("db", "bound"),
    [("postgresql", [D("0.01"), D("0.5")]), ("sqlite", [100, 5000])],
)
def test_tolerances_travel_as_money_binds_never_in_the_sql_text(db: str, bound: list) -> None:
    """The tolerance CTE (SQLAlchemy Core) binds each currency and amount, amounts encoded like the money they are
    compared with (SQLite: integer ten-thousandths); nothing is written into the statement."""
    from sqlalchemy import select

    from writeoffs.db import dialect
    from writeoffs.reconcile.model import _tol

    tol, amount = _tol(dialect.of(db), Tolerances(D("0.5"), {"USD": D("0.01")}))
    compiled = select(tol.c.currency, amount).select_from(tol).compile(dialect=dialect.of(db).sqlalchemy_dialect())
    assert "USD" not in str(compiled) and "0.01" not in str(compiled) and "100" not in str(compiled)
    assert sorted(v for v in compiled.params.values() if v != "USD") == bound


def test_a_tolerance_beyond_the_ledger_scale_is_refused_when_the_query_is_built() -> None:
    from writeoffs.db import dialect
    from writeoffs.errors import InvalidAmount
    from writeoffs.reconcile.model import _tol

    with pytest.raises(InvalidAmount):
        _tol(dialect.of("postgresql"), Tolerances(D(0), {"USD": D("0.00001")}))
