"""Issue 19: the CLI answers "balance of X as of D" and "what changed between D1 and D2" (both databases)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from tests import factories as f
from tests.conftest import ledger_url_of
from tests.integration.posting_support import AS_OF, TIERS, approve, make_batch
from writeoffs.cli import main
from writeoffs.posting import post_batch
from writeoffs.reversal import reverse_writeoff

LATER = date(2026, 12, 3)
HOSTILE = 'INV-"\x1b[31m\n=cmd'


def cli(capsys, engine: Engine, *argv: str) -> tuple[int, dict]:
    code = main(["--ledger-url", ledger_url_of(engine), *argv])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def books(ledger: Engine) -> Engine:
    """The worked example written off on AS_OF and reversed on LATER; a second invoice with a hostile ref."""
    with ledger.begin() as conn:
        ids = f.worked_example(conn)
        f.invoice(conn, ids["customer_id"], ref=HOSTILE, amount="100.00", invoice_date=date(2026, 10, 1))
        batch = make_batch(conn, [(ids["invoice_id"], "45000.00", "uncollectible_after_collections")])
    approve(ledger, batch)
    post_batch(ledger, batch, actor="airflow", tiers=TIERS, posting_date=AS_OF)
    with ledger.begin() as conn:
        reverse_writeoff(
            conn,
            invoice_ref="INV-WORKED-45000",
            reason="posted_in_error",
            requested_by="ar_clerk",
            approved_by="controller",
            posting_date=LATER,
        )
    return ledger


def test_the_cli_answers_balances_changes_and_the_gl_comparison(books: Engine, capsys) -> None:
    """One ledger for every command (building it is most of the test's time)."""
    balance_of_an_invoice_customer_and_entity_as_of_a_date(books, capsys)
    what_changed_between_two_dates(books, capsys)
    hostile_refs_are_escaped_and_bad_dates_refused(books, capsys)
    subledger_vs_gl_at_a_date(books, capsys)


def balance_of_an_invoice_customer_and_entity_as_of_a_date(books: Engine, capsys) -> None:
    day = (AS_OF + timedelta(days=1)).isoformat()
    code, doc = cli(capsys, books, "balance", "--as-of", day, "--level", "invoice", "--invoice", "INV-WORKED-45000")
    assert code == 0 and [(b["invoice"], b["balance"]) for b in doc["balances"]] == [("INV-WORKED-45000", "0.0000")]
    code, doc = cli(capsys, books, "balance", "--as-of", LATER.isoformat(), "--level", "customer")
    assert [(b["customer"], b["balance"], b["open_invoices"]) for b in doc["balances"]] == [
        ("C-NORTHWIND", "45100.0000", 2)
    ]
    code, doc = cli(capsys, books, "balance", "--as-of", "2026-09-30")
    assert [(b["entity"], b["balance"]) for b in doc["balances"]] == [("US01", "45000.0000")]
    # As the ledger knew it yesterday: nothing open (every movement was recorded today).
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    code, doc = cli(capsys, books, "balance", "--as-of", LATER.isoformat(), "--known-on", yesterday)
    assert [(b["balance"], b["open_invoices"]) for b in doc["balances"]] == [("0.0000", 0)]
    assert doc["known_on"] == yesterday


def what_changed_between_two_dates(books: Engine, capsys) -> None:
    code, doc = cli(
        capsys, books, "changes", "--from", "2026-11-01", "--to", LATER.isoformat(), "--entity", "US01",
        "--invoice", "INV-WORKED-45000",
    )  # fmt: skip
    assert code == 0
    assert [(c["kind"], c["balance_change"]) for c in doc["changes"]] == [
        ("reversal", "45000.0000"),
        ("writeoff", "-45000.0000"),
    ]
    assert [m["kind"] for m in doc["movements"]] == ["writeoff", "reversal"]
    assert doc["balance_at_from"][0]["balance"] == doc["balance_at_to"][0]["balance"] == "45000.0000"


def hostile_refs_are_escaped_and_bad_dates_refused(books: Engine, capsys) -> None:
    main(["--ledger-url", ledger_url_of(books), "balance", "--as-of", "2026-10-02", "--level", "invoice"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\u001b" in out
    assert HOSTILE in [b["invoice"] for b in json.loads(out)["balances"]]
    with pytest.raises(SystemExit):
        main(["--ledger-url", ledger_url_of(books), "balance", "--as-of", "31/03/2026"])
    assert "--as-of '31/03/2026' is not a date" in capsys.readouterr().err


def subledger_vs_gl_at_a_date(books: Engine, capsys) -> None:
    # The factories raise invoices in the sub-ledger only: the GL holds just the write-off and its reversal.
    code, doc = cli(capsys, books, "subledger-vs-gl", "--as-of", AS_OF.isoformat())
    assert code == 1
    assert [(p["subledger"], p["gl_ar_control"], p["difference"]) for p in doc["pairs"]] == [
        ("100.0000", "-45000.0000", "-45100.0000")
    ]
    assert Decimal(doc["pairs"][0]["difference"]) == Decimal("-45100")
