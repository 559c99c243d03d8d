"""Per-invoice decision trail: every selection run records, set-wise, the decision on each invoice it considered (the
rule that fired, or the exclusion that stopped it), so ``python -m writeoffs trail`` answers "why was this not
written off?" (issue 15: an invoice excluded by an open dispute showed nothing in ``trail``).
"""

from __future__ import annotations

import json
from datetime import timedelta

import factories as f
import pytest
from conftest import AS_OF, ledger_url_of
from sqlalchemy import select

from writeoffs.cli import main
from writeoffs.db.schema import selection_decisions, selection_runs
from writeoffs.policy.service import prepare
from writeoffs.report import invoice_trail


def _exhaust(conn, cid: int, iid: int) -> None:
    start = AS_OF - timedelta(days=350)
    for k in range(6):
        f.activity(conn, cid, iid, "contact_attempt", start + timedelta(days=k))
    for k in range(2):
        f.activity(conn, cid, iid, "demand_letter", start + timedelta(days=20 + k))
    f.activity(conn, cid, iid, "agency_placement", start + timedelta(days=40), start + timedelta(days=100))


@pytest.fixture
def book(ledger):
    with ledger.begin() as conn:
        worked = f.worked_example(conn, AS_OF)["invoice_id"]
        cid = f.customer(conn, ref="C-TRAIL")
        disputed = f.invoice(conn, cid, ref="INV-DISPUTED", amount="2000.00", days_past_due=400)
        _exhaust(conn, cid, disputed)
        f.hold(conn, cid, disputed, "dispute", start_date=AS_OF - timedelta(days=30))
        small = f.invoice(conn, cid, ref="INV-SMALL", amount="30.00", days_past_due=200)
        young = f.invoice(conn, cid, ref="INV-YOUNG", amount="1000.00", days_past_due=100)
        no_effort = f.invoice(conn, cid, ref="INV-NO-EFFORT", amount="1000.00", days_past_due=400)
    return {
        "worked": worked,
        "disputed": disputed,
        "small": small,
        "young": young,
        "no_effort": no_effort,
    }


def _decisions(ledger) -> dict[int, tuple]:
    with ledger.connect() as conn:
        rows = conn.execute(
            select(
                selection_decisions.c.invoice_id,
                selection_decisions.c.outcome,
                selection_decisions.c.rule,
                selection_decisions.c.route,
                selection_decisions.c.evidence.is_(None),
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_each_considered_invoice_has_its_decision_recorded(ledger, book) -> None:
    prepare(ledger, AS_OF)
    got = _decisions(ledger)
    assert got[book["worked"]] == ("candidate", "aged_and_collections_exhausted", None, True)
    assert got[book["small"]] == ("candidate", "small_balance_aged", None, True)
    assert got[book["disputed"]] == ("excluded", "open_dispute", "aged_and_collections_exhausted", False)
    assert got[book["no_effort"]] == ("not_eligible", "insufficient_attempts", None, True)  # the shortfall says it
    assert book["young"] not in got  # under every route's threshold: screened out, counted, not stored
    with ledger.connect() as conn:
        run = conn.execute(select(selection_runs)).one()
    assert (run.as_of_date, run.considered, run.candidates, run.excluded, run.not_eligible) == (AS_OF, 4, 2, 1, 1)

    prepare(ledger, AS_OF)  # a re-run of the same date and policy replaces its decisions, never duplicates them
    assert _decisions(ledger) == got
    with ledger.connect() as conn:
        assert len(conn.execute(select(selection_runs.c.id)).all()) == 1


def test_trail_answers_why_an_invoice_was_not_written_off(ledger, book, capsys) -> None:
    prepare(ledger, AS_OF)

    disputed = invoice_trail(ledger, "INV-DISPUTED")
    assert "excluded by open_dispute" in disputed
    assert "route that fired: aged_and_collections_exhausted" in disputed
    assert '"open_dispute": true' in disputed

    young = invoice_trail(ledger, "INV-YOUNG")
    assert "not considered" in young and "100 days past due" in young

    no_effort = invoice_trail(ledger, "INV-NO-EFFORT")
    assert "not eligible: insufficient_attempts" in no_effort

    assert main(["--ledger-url", ledger_url_of(ledger), "trail", "INV-DISPUTED"]) == 0
    assert "excluded by open_dispute" in capsys.readouterr().out


def test_small_balance_evidence_shows_its_own_thresholds_in_the_trail(ledger, book) -> None:
    prepare(ledger, AS_OF)
    small = invoice_trail(ledger, "INV-SMALL")
    required = json.loads(small.split("policy required: ", 1)[1].splitlines()[0])
    assert required == {"min_days_past_due": 180, "tolerance": "50.0000", "recent_payment_days": 90}
    assert "writeoff_days" not in small


def test_a_ledger_behind_the_code_says_so_instead_of_failing_mid_query(tmp_path, capsys) -> None:
    # A ledger migrated before the decision trail existed: one clear line pointing at init-db (which upgrades).
    from writeoffs.db.engine import make_engine
    from writeoffs.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0007")
    engine.dispose()
    assert main(["--ledger-url", url, "trail", "INV-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "0007" in err and "init-db" in err and len(err.splitlines()) == 1
    assert main(["--ledger-url", url, "init-db"]) == 0
    assert main(["--ledger-url", url, "trail", "INV-1"]) == 0
