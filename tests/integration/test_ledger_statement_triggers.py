"""PostgreSQL's statement-level ledger triggers (migration 0002) against the ways raw SQL could slip past them.

The checks run once per statement over transition tables, and the commit-time balance check is queued only for
entries whose sums a statement moved. These tests attack exactly those seams: many entries in one statement, lines
spread over statements and transactions, lines moved between entries, savepoints, SET CONSTRAINTS and
data-modifying CTEs. test_ledger_db.py keeps the basic refusals on both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests import factories
from writeoffs import ledger as gl
from writeoffs.errors import ClosedPeriod, LedgerError, UnbalancedEntry
from writeoffs.journal import JournalEntry, JournalLine

DAY = date(2026, 11, 24)


@pytest.fixture
def pg(pg_ledger: Engine) -> Engine:
    with pg_ledger.begin() as conn:
        factories.entity(conn)
    return pg_ledger


def entry(conn: Connection, key: str, day: date = DAY) -> int:
    return conn.execute(
        text(
            "INSERT INTO journal_entries (idempotency_key, entity_code, posting_date, period, status, source_type)"
            " VALUES (:k, 'US01', :d, :p, 'pending', 'manual') RETURNING id"
        ),
        {"k": key, "d": day, "p": gl.period_of(day)},
    ).scalar_one()


def lines(conn: Connection, *rows: tuple) -> None:
    """ONE INSERT statement for all rows ``(entry_id, line_no, account, debit, credit[, functional_dr, _cr])``."""
    values, params = [], {}
    for n, (eid, no, acct, dr, cr, *functional) in enumerate(rows):
        fdr, fcr = functional or (dr, cr)
        values.append(f"(:e{n}, :n{n}, 'US01', :a{n}, 'USD', :dr{n}, :cr{n}, 'USD', :fdr{n}, :fcr{n})")
        params |= {f"e{n}": eid, f"n{n}": no, f"a{n}": acct, f"dr{n}": dr, f"cr{n}": cr, f"fdr{n}": fdr, f"fcr{n}": fcr}
    conn.execute(
        text(
            "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
            f" functional_currency, functional_debit, functional_credit) VALUES {', '.join(values)}"
        ),
        params,
    )


def balanced(conn: Connection, key: str, amount: str = "100", day: date = DAY) -> int:
    eid = entry(conn, key, day)
    lines(conn, (eid, 1, "6100", amount, "0"), (eid, 2, "1100", "0", amount))
    return eid


def flip(conn: Connection, *ids: int) -> None:
    conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = ANY(:ids)"), {"ids": list(ids)})


def statuses(conn: Connection) -> dict[str, str]:
    return dict(conn.execute(text("SELECT idempotency_key, status FROM journal_entries")).all())


@contextmanager
def refused(match: str, domain_error: type[LedgerError]) -> Iterator[None]:
    with pytest.raises(DBAPIError, match=match) as exc:
        yield
    assert "ledger:" in str(exc.value)
    assert isinstance(gl.translate(exc.value), domain_error)


def commit_refused(engine: Engine, work, match: str = "unbalanced journal entry refused at commit") -> None:
    """Every statement of ``work(conn)`` succeeds; the COMMIT is refused and nothing of it stays."""
    conn = engine.connect()
    try:
        trans = conn.begin()
        work(conn)
        with pytest.raises(IntegrityError, match=match):
            trans.commit()
    finally:
        conn.close()


# --- the flip: one statement, many entries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "match", "error"),
    [
        ("unbalanced", "unbalanced journal entry refused", UnbalancedEntry),
        ("functional-only", "unbalanced journal entry refused", UnbalancedEntry),
        ("one-line", "unbalanced journal entry refused", UnbalancedEntry),
        ("no-lines", "unbalanced journal entry refused", UnbalancedEntry),
        ("closed-period", "closed or missing", ClosedPeriod),
    ],
)
def test_one_bad_entry_refuses_the_whole_multi_entry_flip(pg: Engine, bad: str, match: str, error):
    with pg.connect() as conn, conn.begin():
        good = [balanced(conn, f"good{n}") for n in range(5)]
        if bad == "closed-period":
            eid = balanced(conn, "bad", day=date(2026, 10, 15))
            gl.close_period(conn, "US01", "2026-10", actor="controller")
        else:
            eid = entry(conn, "bad")
        if bad == "unbalanced":
            lines(conn, (eid, 1, "6100", "100", "0"), (eid, 2, "1100", "0", "100.01"))
        elif bad == "functional-only":  # balances in USD, not in the functional amounts
            lines(conn, (eid, 1, "6100", "100", "0", "100", "0"), (eid, 2, "1100", "0", "100", "0", "99"))
        elif bad == "one-line":
            lines(conn, (eid, 1, "6100", "100", "0"))
        with refused(match, error), conn.begin_nested():
            flip(conn, *good, eid)
        assert set(statuses(conn).values()) == {"pending"}  # the good ones were not posted either
        conn.rollback()


def test_the_message_names_the_offending_entry(pg: Engine):
    with pg.connect() as conn, conn.begin():
        good = [balanced(conn, f"good{n}") for n in range(3)]
        eid = entry(conn, "bad")
        lines(conn, (eid, 1, "6100", "1", "0"), (eid, 2, "1100", "0", "2"))
        with pytest.raises(DBAPIError, match=rf"unbalanced journal entry refused \(entry {eid}\)"), conn.begin_nested():
            flip(conn, *good, eid)
        conn.rollback()


def _currency_lines(conn: Connection, eid: int, *rows: tuple) -> None:
    """Lines ``(line_no, account, currency, debit, credit, functional_debit, functional_credit)``, functional USD."""
    for no, acct, cur, dr, cr, fdr, fcr in rows:
        conn.execute(
            text(
                "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
                " functional_currency, functional_debit, functional_credit)"
                " VALUES (:e, :n, 'US01', :a, :c, :dr, :cr, 'USD', :fdr, :fcr)"
            ),
            {"e": eid, "n": no, "a": acct, "c": cur, "dr": dr, "cr": cr, "fdr": fdr, "fcr": fcr},
        )


def test_the_flip_checks_the_balance_per_transaction_currency(pg: Engine):
    """Balanced in total and in the functional currency, but not per transaction currency: refused (migration
    0012 decides the three rules in one aggregate per entry; each must still bite on its own)."""
    with pg.connect() as conn, conn.begin():
        good = balanced(conn, "good")
        eid = entry(conn, "bad")
        _currency_lines(
            conn, eid, (1, "6100", "USD", "100", "0", "100", "0"), (2, "1100", "EUR", "0", "100", "0", "100")
        )
        with refused(rf"unbalanced journal entry refused \(entry {eid}\)", UnbalancedEntry), conn.begin_nested():
            flip(conn, good, eid)
        conn.rollback()


def test_an_entry_balanced_in_each_of_two_currencies_flips(pg: Engine):
    with pg.begin() as conn:
        eid = entry(conn, "two-currencies")
        _currency_lines(
            conn,
            eid,
            (1, "6100", "USD", "100", "0", "100", "0"),
            (2, "1100", "USD", "0", "100", "0", "100"),
            (3, "6100", "EUR", "50", "0", "54.10", "0"),
            (4, "1100", "EUR", "0", "50", "0", "54.10"),
        )
        flip(conn, eid)
    assert statuses_of(pg) == {"two-currencies": "posted"}


def test_the_flip_updates_in_place_without_index_writes(pg: Engine):
    """Migration 0012 leaves half of each journal_entries page free, so flipping hundreds of entries inserted in the
    same transaction (many full pages without it) is a HOT update: the row version stays on its page and none of
    the five indexes is written."""
    with pg.connect() as conn, conn.begin():
        ids = [entry(conn, f"hot{n}") for n in range(300)]
        lines(
            conn,
            *(
                (eid, no, acct, dr, cr)
                for eid in ids
                for no, acct, dr, cr in ((1, "6100", "5", "0"), (2, "1100", "0", "5"))
            ),
        )
        flip(conn, *ids)
        updated, hot = conn.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
                " WHERE relid = 'journal_entries'::regclass"
            )
        ).one()
        assert (updated, hot) == (300, 300)
        conn.rollback()


def statuses_of(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return statuses(conn)


def test_balanced_entries_flip_together(pg: Engine):
    with pg.begin() as conn:
        ids = [balanced(conn, f"e{n}", amount=f"{n + 1}.25") for n in range(20)]
        flip(conn, *ids)
    with pg.connect() as conn:
        assert set(statuses(conn).values()) == {"posted"}


# --- balance at COMMIT, whatever the statements in between ------------------------------------------------------


def test_commit_refuses_an_unbalanced_entry_left_by_a_multi_entry_statement(pg: Engine):
    def work(conn: Connection) -> None:
        a, b = entry(conn, "a"), entry(conn, "b")
        lines(conn, (a, 1, "6100", "5", "0"), (a, 2, "1100", "0", "5"), (b, 1, "6100", "7", "0"))

    commit_refused(pg, work, match="refused at commit")
    with pg.connect() as conn:
        assert statuses(conn) == {}


def test_lines_spread_over_statements_commit_when_they_balance(pg: Engine):
    """insertmanyvalues pages (or a person typing) split an entry's lines across statements: that is fine."""
    with pg.begin() as conn:
        a, b = entry(conn, "a"), entry(conn, "b")
        lines(conn, (a, 1, "6100", "10", "0"), (b, 1, "6100", "20", "0"))
        lines(conn, (a, 2, "1100", "0", "4"), (b, 2, "1100", "0", "20"))
        lines(conn, (a, 3, "1190", "0", "6"))
    with pg.begin() as conn:
        flip(conn, a, b)
        assert set(statuses(conn).values()) == {"posted"}


UNBALANCING = {
    "update an amount": "UPDATE journal_lines SET debit = 9, functional_debit = 9 WHERE entry_id = :a AND line_no = 1",
    "update a currency": "UPDATE journal_lines SET currency = 'EUR' WHERE entry_id = :a AND line_no = 1",
    "update a functional amount": "UPDATE journal_lines SET functional_credit = 1 WHERE entry_id = :a AND line_no = 2",
    "delete a line": "DELETE FROM journal_lines WHERE entry_id = :a AND line_no = 2",
    "move a line": "UPDATE journal_lines SET entry_id = :b, line_no = 3 WHERE entry_id = :a AND line_no = 2",
    "add a line": (
        "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
        " functional_currency, functional_debit, functional_credit)"
        " VALUES (:a, 3, 'US01', '6100', 'USD', 5, 0, 'USD', 5, 0)"
    ),
}


@pytest.mark.parametrize("sql", UNBALANCING.values(), ids=UNBALANCING.keys())
def test_a_later_transaction_cannot_unbalance_a_pending_entry(pg: Engine, sql: str):
    with pg.begin() as conn:
        a, b = balanced(conn, "a"), balanced(conn, "b")
    commit_refused(pg, lambda conn: conn.execute(text(sql), {"a": a, "b": b}))
    with pg.connect() as conn:
        sums = conn.execute(
            text("SELECT entry_id, SUM(debit), SUM(credit), COUNT(*) FROM journal_lines GROUP BY 1 ORDER BY 1")
        ).all()
    assert [tuple(r) for r in sums] == [(a, 100, 100, 2), (b, 100, 100, 2)]


def test_edits_that_end_balanced_commit(pg: Engine):
    with pg.begin() as conn:
        a = balanced(conn, "a")
    with pg.begin() as conn:
        # unbalanced after the first statement, balanced again after the second
        conn.execute(
            text("UPDATE journal_lines SET debit = 120, functional_debit = 120 WHERE entry_id = :a AND line_no = 1"),
            {"a": a},
        )
        conn.execute(
            text("UPDATE journal_lines SET credit = 120, functional_credit = 120 WHERE entry_id = :a AND line_no = 2"),
            {"a": a},
        )
        conn.execute(text("UPDATE journal_lines SET memo = 'reviewed' WHERE entry_id = :a"), {"a": a})
    with pg.begin() as conn:
        flip(conn, a)


def test_a_rolled_back_savepoint_keeps_the_queued_recheck(pg: Engine):
    def work(conn: Connection) -> None:
        eid = entry(conn, "a")
        lines(conn, (eid, 1, "6100", "100", "0"))  # unbalanced: re-check queued
        with conn.begin_nested() as sp:
            lines(conn, (eid, 2, "1100", "0", "100"))  # balanced inside the savepoint ...
            sp.rollback()  # ... and undone

    commit_refused(pg, work)


def test_a_recheck_fired_early_and_rolled_back_is_queued_again(pg: Engine):
    def work(conn: Connection) -> None:
        eid = entry(conn, "a")
        lines(conn, (eid, 1, "6100", "100", "0"))
        with refused("unbalanced", UnbalancedEntry), conn.begin_nested():
            conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # fires the queued re-check now: refused

    commit_refused(pg, work)


def test_set_constraints_immediate_checks_each_statement(pg: Engine):
    with pg.connect() as conn, conn.begin():
        conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        eid = entry(conn, "a")
        with refused("unbalanced", UnbalancedEntry), conn.begin_nested():
            lines(conn, (eid, 1, "6100", "100", "0"))
        lines(conn, (eid, 1, "6100", "100", "0"), (eid, 2, "1100", "0", "100"))  # balanced in one statement: fine
        conn.rollback()


# --- posted entries: statements that mix, move and hide ---------------------------------------------------------


@pytest.fixture
def mixed(pg: Engine) -> tuple[int, int]:
    """A posted entry and a pending one, both balanced."""
    with pg.begin() as conn:
        posted, pending = balanced(conn, "posted"), balanced(conn, "pending")
        flip(conn, posted)
    return posted, pending


MIXED = {
    "update lines of both": "UPDATE journal_lines SET memo = 'x' WHERE entry_id IN (:p, :q)",
    "delete lines of both": "DELETE FROM journal_lines WHERE entry_id IN (:p, :q) AND line_no = 2",
    "insert into both": (
        "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
        " functional_currency, functional_debit, functional_credit) VALUES"
        " (:q, 3, 'US01', '6100', 'USD', 5, 0, 'USD', 5, 0), (:p, 3, 'US01', '1100', 'USD', 0, 5, 'USD', 0, 5)"
    ),
    "move lines into a posted entry": "UPDATE journal_lines SET entry_id=:p, line_no = line_no + 9 WHERE entry_id = :q",
    "move lines out of a posted one": "UPDATE journal_lines SET entry_id=:q, line_no = line_no + 9 WHERE entry_id = :p",
    "flip and edit in one statement": (
        "WITH f AS (UPDATE journal_entries SET status = 'posted' WHERE id = :q RETURNING id)"
        " UPDATE journal_lines SET debit = 1, functional_debit = 1 WHERE entry_id = :q AND line_no = 1"
    ),
    "flip and add in one statement": (
        "WITH f AS (UPDATE journal_entries SET status = 'posted' WHERE id = :q RETURNING id)"
        " INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
        " functional_currency, functional_debit, functional_credit)"
        " VALUES (:q, 3, 'US01', '6100', 'USD', 5, 0, 'USD', 5, 0)"
    ),
}


@pytest.mark.parametrize("sql", MIXED.values(), ids=MIXED.keys())
def test_statements_touching_a_posted_entry_are_refused_whole(pg: Engine, mixed: tuple[int, int], sql: str):
    p, q = mixed
    with pg.connect() as conn:
        before = conn.execute(text("SELECT * FROM journal_lines ORDER BY id")).all()
    with pytest.raises(DBAPIError, match=r"ledger: .*(immutable|unbalanced)"), pg.begin() as conn:
        conn.execute(text(sql), {"p": p, "q": q})
    with pg.connect() as conn:
        assert conn.execute(text("SELECT * FROM journal_lines ORDER BY id")).all() == before
        assert statuses(conn) == {"posted": "posted", "pending": "pending"}


# --- the posting path itself ------------------------------------------------------------------------------------


def recheck_calls(conn: Connection) -> int:
    """Run the commit-time re-checks queued so far (SET CONSTRAINTS ... IMMEDIATE) and count them."""
    conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    conn.execute(text("SET CONSTRAINTS ALL DEFERRED"))
    return conn.execute(
        text("SELECT COALESCE(SUM(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'ledger_je_balanced'")
    ).scalar_one()


def test_posting_queues_no_commit_time_recheck(pg: Engine):
    """What makes posting cheap: each chunk's lines arrive in one statement, so no entry's sums are left moved."""
    entries = [
        JournalEntry(
            key=f"wo:{n}",
            entity="US01",
            posting_date=DAY,
            lines=(
                JournalLine(account="6100", currency="USD", debit=f"{n}.01"),
                JournalLine(account="1100", currency="USD", credit=f"{n}.01"),
            ),
        )
        for n in range(200)
    ]
    with pg.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL track_functions = 'pl'"))
        result = gl.post_entries(conn, entries, created_by="tester")
        assert len(result.posted) == 200
        assert recheck_calls(conn) == 0
        # the control: a person typing one line per statement does queue (and pass) the re-check
        eid = entry(conn, "typed")
        lines(conn, (eid, 1, "6100", "3", "0"))
        lines(conn, (eid, 2, "1100", "0", "3"))
        assert recheck_calls(conn) == 2
