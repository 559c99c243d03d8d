"""Which errors may retry: ``writeoffs.errors.is_permanent`` and the one wrapper that applies it to DAG tasks.

A named domain error fails the same way on every try (bad config, refused data, policy and approval errors) and so
is permanent; an error about a system that did not answer (source database or API, the ledger) is not, nor is any
error we did not name (a driver's connection error, an HTTP timeout). ``fail_fast`` turns the permanent ones into
Airflow's ``AirflowFailException`` (no retry) with a one-line message and lets everything else through unchanged.
"""

from __future__ import annotations

import ast
import inspect
import socket
from datetime import date
from pathlib import Path

import pytest
import requests
from sqlalchemy.exc import OperationalError

from writeoffs import errors as e
from writeoffs.db.engine import LedgerNotInitialised, LedgerUnreachable, open_ledger
from writeoffs.ingest import config as source_config
from writeoffs.ingest.sources import build_source
from writeoffs.validation.run import ValidationBlocked

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "exc",
    [
        e.ConfigError("policy.yaml: rules.0.min_days: not an integer"),
        e.InputError("not a number", source="erp_csv", row=3, field="amount"),
        e.InvalidAmount("negative amount", field="amount"),
        e.UnknownCurrency("XXX is not a currency"),
        e.ClosedPeriod("2026-10 is closed"),
        e.SegregationOfDuties("the preparer cannot approve"),
        ValidationBlocked.__new__(ValidationBlocked),  # built from a validation report; the class is what counts
        LedgerNotInitialised("no ledger at sqlite:///x.db: run init-db first"),
    ],
    ids=lambda x: type(x).__name__,
)
def test_named_domain_errors_are_permanent(exc):
    assert e.is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        e.SourceUnavailable("connection failed after 5 attempt(s)", source="billing_api"),
        LedgerUnreachable("cannot reach the ledger at postgresql://..."),
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        requests.Timeout("read timed out"),
        ConnectionRefusedError(111, "refused"),
        ValueError("a bug we did not name"),
    ],
    ids=lambda x: type(x).__name__,
)
def test_unreachable_systems_and_unnamed_errors_are_transient(exc):
    assert not e.is_permanent(exc)


def test_an_unreachable_source_database_is_transient_and_a_bad_query_permanent(tmp_path):
    cfg = source_config.load().source("billing_db")
    down = build_source(cfg, url=f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'source.db'}")
    with pytest.raises(e.InputError) as raised:
        list(down.read("invoices", date(2026, 11, 24)))
    assert not e.is_permanent(raised.value) and "source database" in str(raised.value)

    empty = build_source(cfg, url=f"sqlite:///{tmp_path / 'empty.db'}")  # reachable, but no such table
    with pytest.raises(e.InputError) as raised:
        list(empty.read("invoices", date(2026, 11, 24)))
    # SQLite reports a missing table as an OperationalError too: counted as transient (a retry costs little).
    assert "ar_invoices" in str(raised.value)


def test_an_unreachable_http_source_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    cfg = source_config.load().source("billing_api").model_copy(update={"retries": 0})
    with pytest.raises(e.SourceUnavailable) as raised:
        list(build_source(cfg, url=f"http://127.0.0.1:{port}/").read("invoices", date(2026, 11, 24)))
    assert not e.is_permanent(raised.value) and "after 1 attempt(s)" in str(raised.value)


def test_an_unreachable_ledger_is_transient_and_a_missing_one_permanent(tmp_path):
    with pytest.raises(LedgerNotInitialised) as missing:
        open_ledger(f"sqlite:///{tmp_path / 'none.db'}")
    assert e.is_permanent(missing.value)
    with pytest.raises(LedgerNotInitialised) as down:
        open_ledger("postgresql+psycopg://u:p@127.0.0.1:9/ledger?connect_timeout=2")
    assert isinstance(down.value, LedgerUnreachable) and not e.is_permanent(down.value)


def test_fail_fast_fails_permanent_errors_with_one_line_and_passes_the_rest():
    from airflow.sdk.exceptions import AirflowFailException

    from writeoffs_airflow.failfast import fail_fast

    @fail_fast
    def run(kind: str, **context) -> str:
        """doc"""
        if kind == "config":
            raise e.ConfigError("sources.yaml: sources.erp_csv.format:\nnot one of csv, xlsx")
        if kind == "down":
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return f"ok {context['run_id']}"

    assert run("fine", run_id="r1") == "ok r1"
    assert run.__name__ == "run" and run.__doc__ == "doc"
    assert list(inspect.signature(run).parameters) == ["kind", "context"]  # Airflow passes context by signature
    with pytest.raises(AirflowFailException) as failed:
        run("config")
    assert str(failed.value) == "ConfigError: sources.yaml: sources.erp_csv.format:\\nnot one of csv, xlsx"
    assert isinstance(failed.value.__cause__, e.ConfigError)
    with pytest.raises(OperationalError):
        run("down")


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    return ast.unparse(target)


def test_every_task_in_the_dags_carries_fail_fast():
    """One rule for every task: each ``@task`` function in dags/ is wrapped by ``@fail_fast`` right under it."""
    tasks = 0
    for path in sorted((ROOT / "dags").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef):
                continue
            names = [_decorator_name(d) for d in node.decorator_list]
            if "task" in names:
                tasks += 1
                i = names.index("task")
                assert names[i + 1 : i + 2] == ["fail_fast"], f"{path.name}: task {node.name} lacks @fail_fast"
    assert tasks >= 20
