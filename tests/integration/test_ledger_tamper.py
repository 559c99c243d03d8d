"""Issue 14, tampering as an insider would: SQLite's REPLACE and upserts, and posting into a closed period.

Each test is an attack; it passes when the *database* refuses it (migration 0009), whoever connects:
- SQLite's ``INSERT OR REPLACE`` / ``REPLACE INTO`` / ``UPDATE OR REPLACE`` delete the row they collide with
  without firing its DELETE triggers (SQLite fires them only under ``PRAGMA recursive_triggers``, a per-connection
  setting an attacker simply leaves off), so the immutability triggers of 0002 never saw them. Every attack below is
  run through our engine *and* through a bare ``sqlite3`` connection with no pragma at all (what someone holding the
  file has).
- An upsert (``ON CONFLICT DO UPDATE``) on a posted entry, a posted line or an audit row.
- A closed fiscal period re-opened by raw UPDATE (re-open, post, re-close), deleted and re-created, replaced, or
  covered by a second (new or widened) period row, to land an expense in a closed month.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError

from tests import factories
from writeoffs import audit
from writeoffs import ledger as gl
from writeoffs.db.schema import fiscal_periods, journal_entries
from writeoffs.errors import ClosedPeriod, LedgerError, PostedEntryImmutable
from writeoffs.journal import JournalEntry, JournalLine

D = Decimal
DAY = date(2026, 11, 24)
CLOSED_DAY = date(2026, 10, 15)


def expense(key: str, amount: str = "375000.00", day: date = DAY) -> JournalEntry:
    return JournalEntry(
        key=key,
        entity="US01",
        posting_date=day,
        lines=(
            JournalLine(account="6100", currency="USD", debit=D(amount)),
            JournalLine(account="1100", currency="USD", credit=D(amount)),
        ),
        description=f"entry {key}",
        source_type="writeoff",
    )


def post(engine: Engine, *entries: JournalEntry) -> gl.PostResult:
    with engine.begin() as conn:
        return gl.post_entries(conn, list(entries), created_by="tester")


def _books(ledger: Engine) -> Engine:
    """US01 with periods 2024-01..2027-12, one posted entry (id 1, lines 1-2), a pending draft (id 2, lines 3-4)
    and five audit rows."""
    with ledger.begin() as conn:
        factories.entity(conn)
    post(ledger, expense("posted", "45000.00"))
    with ledger.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO journal_entries (id, idempotency_key, entity_code, posting_date, period, status,"
                " source_type) VALUES (2, 'draft', 'US01', :d, '2026-11', 'pending', 'manual')"
            ),
            {"d": DAY},
        )
        for line_id, line_no, account, dr, cr in ((3, 1, "6100", 5, 0), (4, 2, "1100", 0, 5)):
            conn.execute(
                text(
                    "INSERT INTO journal_lines (id, entry_id, line_no, entity_code, account_code, currency, debit,"
                    " credit, functional_currency, functional_debit, functional_credit)"
                    " VALUES (:id, 2, :n, 'US01', :a, 'USD', :dr, :cr, 'USD', :dr, :cr)"
                ),
                {"id": line_id, "n": line_no, "a": account, "dr": dr, "cr": cr},
            )
        for i in range(1, 6):
            audit.append(conn, actor=f"user{i}", action="test.event", object_type="thing", object_id=i, details={})
    with ledger.connect() as conn:
        assert conn.execute(select(journal_entries.c.id, journal_entries.c.status)).all() == [
            (1, "posted"),
            (2, "pending"),
        ]
    return ledger


@pytest.fixture
def books(ledger: Engine) -> Engine:
    return _books(ledger)


def fingerprint(conn: Connection) -> tuple:
    """Everything an attack on posted rows or the audit log would change."""
    entries = conn.execute(text("SELECT * FROM journal_entries WHERE status = 'posted' ORDER BY id")).all()
    lines = conn.execute(
        text(
            "SELECT l.* FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id"
            " WHERE e.status = 'posted' ORDER BY l.id"
        )
    ).all()
    log = conn.execute(text("SELECT * FROM audit_log ORDER BY id")).all()
    return tuple(map(tuple, entries)), tuple(map(tuple, lines)), tuple(map(tuple, log))


_ENTRY_COLS = "id, idempotency_key, entity_code, posting_date, period, status, source_type, description"
_LINE_COLS = (
    "id, entry_id, line_no, entity_code, account_code, currency, debit, credit, functional_currency,"
    " functional_debit, functional_credit"
)
_AUDIT_COLS = "id, recorded_at, actor, action, object_type, object_id, details, prev_hash, row_hash"
_AUDIT_ROW_3 = "SELECT id, recorded_at, 'mallory', action, object_type, object_id, details, prev_hash, row_hash"

#: SQLite-only statements (REPLACE is SQLite's): each would rewrite or remove a posted row or an audit row.
REPLACE_ATTACKS = {
    "entry: INSERT OR REPLACE by id, as a pending entry": (
        f"INSERT OR REPLACE INTO journal_entries ({_ENTRY_COLS})"
        " VALUES (1, 'forged', 'US01', '2026-11-24', '2026-11', 'pending', 'manual', 'forged')"
    ),
    "entry: REPLACE INTO by idempotency key": (
        f"REPLACE INTO journal_entries ({_ENTRY_COLS})"
        " VALUES (99, 'posted', 'US01', '2026-11-24', '2026-11', 'pending', 'manual', 'forged')"
    ),
    "entry: UPDATE OR REPLACE a draft onto the posted key": (
        "UPDATE OR REPLACE journal_entries SET idempotency_key = 'posted' WHERE id = 2"
    ),
    "entry: UPDATE OR REPLACE a draft onto the posted id": "UPDATE OR REPLACE journal_entries SET id = 1 WHERE id = 2",
    "line: INSERT OR REPLACE a posted line's id into the draft": (
        f"INSERT OR REPLACE INTO journal_lines ({_LINE_COLS})"
        " VALUES (1, 2, 3, 'US01', '6100', 'USD', 1, 0, 'USD', 1, 0)"
    ),
    "line: REPLACE INTO by (entry_id, line_no)": (
        f"REPLACE INTO journal_lines ({_LINE_COLS}) VALUES (50, 1, 1, 'US01', '6100', 'USD', 1, 0, 'USD', 1, 0)"
    ),
    "line: UPDATE OR REPLACE a draft line onto a posted line's id": (
        "UPDATE OR REPLACE journal_lines SET id = 1 WHERE id = 3"
    ),
    "audit: INSERT OR REPLACE row 3": f"INSERT OR REPLACE INTO audit_log ({_AUDIT_COLS}) {_AUDIT_ROW_3} FROM audit_log"
    " WHERE id = 3",
    "audit: REPLACE INTO by row_hash under a new id": (
        f"REPLACE INTO audit_log ({_AUDIT_COLS}) SELECT 99, recorded_at, 'mallory', action, object_type, object_id,"
        " details, prev_hash, row_hash FROM audit_log WHERE id = 5"
    ),
}

#: Upserts, valid on both databases: the insert collides and turns into an UPDATE of the protected row.
UPSERT_ATTACKS = {
    "entry": (
        f"INSERT INTO journal_entries ({_ENTRY_COLS})"
        " VALUES (1, 'posted', 'US01', '2026-11-24', '2026-11', 'pending', 'manual', 'x')"
        " ON CONFLICT (idempotency_key) DO UPDATE SET description = 'edited'"
    ),
    "line": (
        f"INSERT INTO journal_lines ({_LINE_COLS}) VALUES (1, 1, 1, 'US01', '6100', 'USD', 1, 0, 'USD', 1, 0)"
        " ON CONFLICT (id) DO UPDATE SET debit = 1, functional_debit = 1"
    ),
    "audit": (
        f"INSERT INTO audit_log ({_AUDIT_COLS}) {_AUDIT_ROW_3} FROM audit_log WHERE id = 3"
        " ON CONFLICT (id) DO UPDATE SET actor = 'mallory'"
    ),
}


def _via_engine(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def _via_bare_sqlite3(engine: Engine, sql: str) -> None:
    """The attacker's own ``sqlite3`` connection to the file: none of our pragmas (foreign keys and recursive
    triggers off)."""
    con = sqlite3.connect(Path(engine.url.database))
    try:
        with con:
            con.execute(sql)
    finally:
        con.close()


VIAS: dict[str, Callable[[Engine, str], None]] = {"engine": _via_engine, "bare sqlite3": _via_bare_sqlite3}


@contextmanager
def refused(match: str, domain_error: type[LedgerError] = LedgerError) -> Iterator[None]:
    """Refused by a ``ledger:`` trigger; through SQLAlchemy, ``translate`` names ``domain_error``."""
    with pytest.raises((DBAPIError, sqlite3.DatabaseError), match=match) as exc:
        yield
    assert "ledger:" in str(exc.value)
    if isinstance(exc.value, DBAPIError):
        assert isinstance(gl.translate(exc.value), domain_error)


@pytest.mark.parametrize("via", VIAS, ids=VIAS)
@pytest.mark.parametrize("sql", REPLACE_ATTACKS.values(), ids=REPLACE_ATTACKS.keys())
def test_sqlite_replace_cannot_rewrite_posted_rows_or_audit_rows(make_ledger, sql: str, via: str):
    engine = _books(make_ledger("sqlite"))
    with engine.connect() as conn:
        before = fingerprint(conn)
    with refused("ledger:", PostedEntryImmutable):
        VIAS[via](engine, sql)
    with engine.connect() as conn:
        assert fingerprint(conn) == before
        assert audit.verify(conn) == []
        assert gl.account_balance(conn, "US01", "6100") == D("45000")


def _sqlite_books(make_ledger) -> Engine:
    engine = make_ledger("sqlite")
    with engine.begin() as conn:
        factories.entity(conn)
    return engine


@pytest.mark.parametrize("sql", UPSERT_ATTACKS.values(), ids=UPSERT_ATTACKS.keys())
def test_upsert_cannot_rewrite_posted_rows_or_audit_rows(books: Engine, sql: str):
    with books.connect() as conn:
        before = fingerprint(conn)
    with refused("ledger:", PostedEntryImmutable):
        _via_engine(books, sql)
    with books.connect() as conn:
        assert fingerprint(conn) == before
        assert audit.verify(conn) == []


def test_sqlite_replace_still_allows_normal_work(make_ledger):
    """The guard refuses collisions, not writes: posting is still idempotent, bootstrap still re-runnable, and a
    fresh row inserts through REPLACE as through INSERT."""
    engine = _sqlite_books(make_ledger)
    first = post(engine, expense("a", "10.00"))
    assert post(engine, expense("a", "10.00")).already == first.posted
    with engine.begin() as conn:
        factories.entity(conn)
        gl.close_period(conn, "US01", "2026-10", actor="controller")
        factories.entity(conn)  # re-running the bootstrap neither fails nor re-opens the closed month
    _via_bare_sqlite3(
        engine,
        f"INSERT OR REPLACE INTO journal_entries ({_ENTRY_COLS})"
        " VALUES (77, 'new-draft', 'US01', '2026-11-24', '2026-11', 'pending', 'manual', 'x')",
    )
    with engine.connect() as conn:
        assert conn.execute(select(journal_entries.c.status).where(journal_entries.c.id == 77)).scalar_one() == (
            "pending"
        )
        assert conn.execute(
            select(fiscal_periods.c.status).where(fiscal_periods.c.period == "2026-10")
        ).scalar_one() == ("closed")


# --- closed periods -----------------------------------------------------------------------------------------------


@pytest.fixture
def closed_october(ledger: Engine) -> Engine:
    with ledger.begin() as conn:
        factories.entity(conn)
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    return ledger


def october_expense_refused(engine: Engine) -> None:
    """After every attack: an expense dated in October still cannot be posted, through our code or raw SQL."""
    with pytest.raises(ClosedPeriod):
        post(engine, expense("late", day=CLOSED_DAY))
    with engine.connect() as conn:
        assert gl.account_balance(conn, "US01", "6100") == 0
        row = conn.execute(select(fiscal_periods).where(fiscal_periods.c.period == "2026-10")).one()
    assert (row.status, row.start_date, row.end_date, row.closed_by) == (
        "closed",
        date(2026, 10, 1),
        date(2026, 10, 31),
        "controller",
    )


def test_reopen_post_reclose_refused(closed_october: Engine):
    """The issue's attack: re-open by raw UPDATE, post 375,000 into October, close again."""
    with pytest.raises(DBAPIError, match=r"ledger:.*closed") as exc, closed_october.begin() as conn:
        conn.exec_driver_sql("UPDATE fiscal_periods SET status = 'open' WHERE period = '2026-10'")
        gl.post_entries(conn, [expense("late", day=CLOSED_DAY)], created_by="mallory")
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    assert isinstance(gl.translate(exc.value), ClosedPeriod)
    october_expense_refused(closed_october)


CLOSED_PERIOD_EDITS = {
    "re-open": "UPDATE fiscal_periods SET status = 'open', closed_at = NULL, closed_by = NULL WHERE period = '2026-10'",
    "move its dates": "UPDATE fiscal_periods SET end_date = start_date WHERE period = '2026-10'",
    "rewrite who closed it": "UPDATE fiscal_periods SET closed_by = 'mallory' WHERE period = '2026-10'",
    "delete it (to insert it again, open)": "DELETE FROM fiscal_periods WHERE period = '2026-10'",
    "upsert it open": (
        "INSERT INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
        " VALUES ('US01', '2026-10', '2026-10-01', '2026-10-31', 'open')"
        " ON CONFLICT (entity_code, period) DO UPDATE SET status = 'open'"
    ),
}


@pytest.mark.parametrize("sql", CLOSED_PERIOD_EDITS.values(), ids=CLOSED_PERIOD_EDITS.keys())
def test_closed_period_cannot_be_changed_by_raw_sql(closed_october: Engine, sql: str):
    with pytest.raises(DBAPIError, match=r"ledger:.*closed") as exc, closed_october.begin() as conn:
        conn.exec_driver_sql(sql)
    assert isinstance(gl.translate(exc.value), ClosedPeriod)
    october_expense_refused(closed_october)


COVERING_PERIODS = {
    # a second period row (any key) whose dates take in a closed month
    "new row over the closed month": (
        "INSERT INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
        " VALUES ('US01', '2026-13', '2026-10-01', '2026-10-31', 'open')"
    ),
    "new row straddling it": (
        "INSERT INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
        " VALUES ('US01', '2031-01', '2026-09-20', '2026-10-02', 'open')"
    ),
    "open month widened over it": "UPDATE fiscal_periods SET start_date = '2026-09-01' WHERE period = '2026-11'",
}


@pytest.mark.parametrize("sql", COVERING_PERIODS.values(), ids=COVERING_PERIODS.keys())
def test_second_period_covering_a_closed_month_refused(closed_october: Engine, sql: str):
    with pytest.raises(DBAPIError, match=r"ledger:.*overlap") as exc, closed_october.begin() as conn:
        conn.exec_driver_sql(sql)
        # what the attacker does next: an entry in the new period, dated in October
        conn.exec_driver_sql(
            "INSERT INTO journal_entries (idempotency_key, entity_code, posting_date, period, status, source_type)"
            " VALUES ('late', 'US01', '2026-10-15', '2026-13', 'pending', 'manual')"
        )
    assert isinstance(gl.translate(exc.value), LedgerError)
    october_expense_refused(closed_october)
    with closed_october.connect() as conn:
        assert conn.execute(select(fiscal_periods.c.period).where(fiscal_periods.c.period > "2027-12")).all() == []


def test_open_periods_cannot_overlap_either(ledger: Engine):
    with ledger.begin() as conn:
        factories.entity(conn, periods_from=date(2026, 1, 1), periods_to=date(2026, 12, 31))
    with pytest.raises(DBAPIError, match=r"ledger:.*overlap"), ledger.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
            " VALUES ('US01', '2026-Q4', '2026-10-01', '2026-12-31', 'open')"
        )
    # Adjacent periods, another entity's same months, and an open period's own harmless edit are fine.
    with ledger.begin() as conn:
        factories.entity(conn, periods_from=date(2027, 1, 1), periods_to=date(2027, 3, 31))
        factories.entity(
            conn, code="DE01", currency="EUR", periods_from=date(2026, 1, 1), periods_to=date(2026, 12, 31)
        )
        conn.exec_driver_sql("UPDATE fiscal_periods SET end_date = end_date WHERE period = '2026-11'")
    with ledger.connect() as conn:
        assert len(conn.execute(select(fiscal_periods)).all()) == 27


def test_sqlite_replace_cannot_reopen_a_closed_period(make_ledger):
    engine = _sqlite_books(make_ledger)
    with engine.begin() as conn:
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    for via in VIAS.values():
        with refused("ledger:.*closed", ClosedPeriod):
            via(
                engine,
                "INSERT OR REPLACE INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
                " VALUES ('US01', '2026-10', '2026-10-01', '2026-10-31', 'open')",
            )
    october_expense_refused(engine)


def test_close_period_is_final_and_recorded_once(closed_october: Engine):
    with closed_october.begin() as conn:
        gl.close_period(conn, "US01", "2026-10", actor="someone-else")  # already closed: nothing changes
        with pytest.raises(LedgerError, match="does not exist"):
            gl.close_period(conn, "US01", "2031-01", actor="controller")
    with closed_october.connect() as conn:
        closes = conn.execute(text("SELECT actor FROM audit_log WHERE action = 'period.close'")).scalars().all()
    assert closes == ["controller"]
    october_expense_refused(closed_october)


@pytest.mark.parametrize("sql", ["TRUNCATE fiscal_periods", "TRUNCATE fiscal_periods CASCADE"])
def test_postgres_refuses_truncating_the_periods(pg_ledger: Engine, sql: str):
    """Emptying the table to re-create October open: refused (the journal's foreign key, or its TRUNCATE guard)."""
    with pg_ledger.begin() as conn:
        factories.entity(conn)
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    with pytest.raises(DBAPIError), pg_ledger.begin() as conn:
        conn.exec_driver_sql(sql)
    october_expense_refused(pg_ledger)


def test_postgres_concurrent_overlapping_periods_one_wins(pg_ledger: Engine):
    """Two transactions each add a period over the same days: READ COMMITTED snapshots alone would let both
    through; the per-entity advisory lock makes the second wait for the first and then see its row."""
    with pg_ledger.begin() as conn:
        factories.entity(conn, periods_from=date(2026, 1, 1), periods_to=date(2026, 6, 30))
    insert = (
        "INSERT INTO fiscal_periods (entity_code, period, start_date, end_date, status)"
        " VALUES ('US01', :p, '2026-07-01', '2026-07-31', 'open')"
    )
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with pg_ledger.begin() as conn:
                conn.execute(text(insert), {"p": "2026-7b"})
            outcome["second"] = "committed"
        except DBAPIError as exc:
            outcome["second"] = exc

    first = pg_ledger.connect()
    try:
        trans = first.begin()
        first.execute(text(insert), {"p": "2026-07"})
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive(), "the second writer should wait for the first"
        trans.commit()
    finally:
        first.close()
    worker.join(timeout=30)
    assert isinstance(outcome.get("second"), DBAPIError) and "overlap" in str(outcome["second"])
    with pg_ledger.connect() as conn:
        july = conn.execute(select(fiscal_periods.c.period).where(fiscal_periods.c.start_date >= date(2026, 7, 1)))
        assert july.scalars().all() == ["2026-07"]
