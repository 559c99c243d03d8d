"""The ledger on both databases: posting, idempotency, closed periods, reversals, and the database's own refusals.

The raw-SQL tests bypass Python on purpose: an auditor's question is "what stops someone with a SQL prompt",
and the answer must be the database (migration 0002's triggers), not our code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from itertools import pairwise

import pytest
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests import factories
from writeoffs import audit, audit_anchor
from writeoffs import ledger as gl
from writeoffs.db.schema import accounts, audit_log, fiscal_periods, journal_entries, journal_lines, legal_entities
from writeoffs.errors import ClosedPeriod, LedgerError, PostedEntryImmutable, UnbalancedEntry
from writeoffs.journal import JournalEntry, JournalLine

D = Decimal
DAY = date(2026, 11, 24)


def writeoff_entry(key: str = "wo:INV-WORKED-45000", amount: str = "45000.00", day: date = DAY) -> JournalEntry:
    """The worked example: Dr Bad Debt Expense / Cr Accounts Receivable."""
    return JournalEntry(
        key=key,
        entity="US01",
        posting_date=day,
        lines=(
            JournalLine(account="6100", currency="USD", debit=D(amount)),
            JournalLine(account="1100", currency="USD", credit=D(amount)),
        ),
        description="Write-off INV-WORKED-45000",
        source_type="writeoff",
        source_id="INV-WORKED-45000",
    )


def counts(conn: Connection) -> tuple[int, int]:
    n_entries = conn.execute(select(func.count()).select_from(journal_entries)).scalar_one()
    n_lines = conn.execute(select(func.count()).select_from(journal_lines)).scalar_one()
    return n_entries, n_lines


@pytest.fixture
def books(ledger: Engine) -> Engine:
    """A ledger with entity US01 (USD, periods 2024-01..2027-12)."""
    with ledger.begin() as conn:
        factories.entity(conn)
    return ledger


def post(engine: Engine, *entries: JournalEntry) -> gl.PostResult:
    with engine.begin() as conn:
        return gl.post_entries(conn, list(entries), created_by="tester")


# --- domain API --------------------------------------------------------------------------------------------------


def test_bootstrap_entity_is_idempotent(ledger: Engine):
    for _ in range(3):
        with ledger.begin() as conn:
            factories.entity(conn, periods_from=date(2026, 1, 1), periods_to=date(2026, 12, 31))
    with ledger.connect() as conn:
        assert conn.execute(select(func.count()).select_from(legal_entities)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(accounts)).scalar_one() == len(gl.DEFAULT_CHART)
        periods = conn.execute(select(fiscal_periods.c.period, fiscal_periods.c.status)).all()
    assert len(periods) == 12
    assert {p.status for p in periods} == {"open"}


def test_bootstrap_entity_does_not_reopen_a_closed_period(books: Engine):
    with books.begin() as conn:
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    with books.begin() as conn:
        factories.entity(conn)
    with books.connect() as conn:
        status = conn.execute(select(fiscal_periods.c.status).where(fiscal_periods.c.period == "2026-10")).scalar_one()
    assert status == "closed"


def test_post_entries_posts_once_per_key(books: Engine):
    first = post(books, writeoff_entry())
    assert list(first.posted) == ["wo:INV-WORKED-45000"] and first.already == {}
    again = post(books, writeoff_entry())
    assert again.posted == {} and again.already == first.posted
    # a retry mixed with a new entry posts only the new one
    mixed = post(books, writeoff_entry(), writeoff_entry("wo:other", "10.00"))
    assert list(mixed.posted) == ["wo:other"] and list(mixed.already) == ["wo:INV-WORKED-45000"]
    with books.connect() as conn:
        assert counts(conn) == (2, 4)
        statuses = conn.execute(select(journal_entries.c.status)).scalars().all()
        lines = conn.execute(
            select(journal_lines.c.line_no, journal_lines.c.account_code, journal_lines.c.debit, journal_lines.c.credit)
            .where(journal_lines.c.entry_id == first.posted["wo:INV-WORKED-45000"])
            .order_by(journal_lines.c.line_no)
        ).all()
    assert statuses == ["posted", "posted"]
    assert [tuple(r) for r in lines] == [(1, "6100", D("45000.0000"), D(0)), (2, "1100", D(0), D("45000.0000"))]


def test_duplicate_keys_in_one_call_refused(books: Engine):
    with pytest.raises(LedgerError, match="duplicate"):
        post(books, writeoff_entry(), writeoff_entry())
    with books.connect() as conn:
        assert counts(conn) == (0, 0)


@pytest.mark.parametrize("day", [date(2026, 10, 31), date(2030, 1, 1)], ids=["closed", "missing"])
def test_closed_or_missing_period_refused_and_nothing_written(books: Engine, day: date):
    with books.begin() as conn:
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    # One good entry in an open period in the same call: the whole call is refused, not half-posted.
    with pytest.raises(ClosedPeriod, match="posting refused"):
        post(books, writeoff_entry("ok", day=DAY), writeoff_entry("bad", day=day))
    with books.connect() as conn:
        assert counts(conn) == (0, 0)


def test_account_balance(books: Engine):
    post(books, writeoff_entry())
    recovery = JournalEntry(
        key="rec:1",
        entity="US01",
        posting_date=date(2027, 5, 20),  # six months later new ownership settles for $30,000
        lines=(
            JournalLine(account="1000", currency="USD", debit=D("30000")),
            JournalLine(account="4900", currency="USD", credit=D("30000")),
        ),
    )
    post(books, recovery)
    with books.connect() as conn:

        def bal(acct: str, **kw) -> Decimal:
            return gl.account_balance(conn, "US01", acct, **kw)

        assert bal("6100") == D("45000")
        assert bal("1100", currency="USD") == D("-45000")
        assert bal("1000") == D("30000") and bal("4900") == D("-30000")
        assert bal("1000", as_of=date(2027, 5, 19)) == 0  # before the recovery
        assert bal("6100", as_of=date(2026, 11, 23)) == 0
        assert bal("6100", currency="EUR") == 0
        assert bal("1190") == 0


def test_reversal_links_and_nets_to_zero(books: Engine):
    original = writeoff_entry()
    orig_id = post(books, original).posted[original.key]
    rev = original.reversal("rev:INV-WORKED-45000", date(2026, 12, 2))
    rev_id = post(books, rev).posted[rev.key]
    assert post(books, rev).already == {rev.key: rev_id}  # idempotent too
    with books.connect() as conn:
        row = conn.execute(select(journal_entries).where(journal_entries.c.id == rev_id)).one()
        assert (row.reverses_entry_id, row.source_type, row.status) == (orig_id, "reversal", "posted")
        for acct in ("6100", "1100"):
            assert gl.account_balance(conn, "US01", acct) == 0
        assert gl.account_balance(conn, "US01", "6100", as_of=date(2026, 12, 1)) == D("45000")
        assert counts(conn) == (2, 4)


def test_an_entry_can_be_reversed_only_once_and_only_when_posted(books: Engine):
    original = writeoff_entry()
    with pytest.raises(LedgerError, match="not posted"):
        post(books, original.reversal("rev:early", DAY))
    post(books, original)
    post(books, original.reversal("rev:1", DAY))
    with pytest.raises(LedgerError, match="reversed once"):  # and UNIQUE(reverses_entry_id) behind it
        post(books, original.reversal("rev:2", DAY))
    with books.connect() as conn:
        assert counts(conn) == (2, 4)


# --- raw SQL: the database refuses ------------------------------------------------------------------------------


def raw_entry(conn: Connection, key: str, *, status: str = "pending", day: date = DAY) -> int:
    conn.execute(
        text(
            "INSERT INTO journal_entries (idempotency_key, entity_code, posting_date, period, status, source_type)"
            " VALUES (:k, 'US01', :d, :p, :s, 'manual')"
        ),
        {"k": key, "d": day, "p": gl.period_of(day), "s": status},
    )
    return conn.execute(text("SELECT id FROM journal_entries WHERE idempotency_key = :k"), {"k": key}).scalar_one()


def raw_line(conn: Connection, entry_id: int, line_no: int, account: str, debit: str, credit: str) -> None:
    conn.execute(
        text(
            "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
            " functional_currency, functional_debit, functional_credit)"
            " VALUES (:e, :n, 'US01', :a, 'USD', :dr, :cr, 'USD', :dr, :cr)"
        ),
        {"e": entry_id, "n": line_no, "a": account, "dr": debit, "cr": credit},
    )


@contextmanager
def refused(match: str, domain_error: type[LedgerError]) -> Iterator[None]:
    """The statement fails with the trigger's ``ledger:`` message, and translate() names the right domain error."""
    with pytest.raises(DBAPIError, match=match) as exc:
        yield
    assert "ledger:" in str(exc.value)
    assert isinstance(gl.translate(exc.value), domain_error)


@pytest.fixture
def posted(books: Engine) -> int:
    return post(books, writeoff_entry()).posted["wo:INV-WORKED-45000"]


IMMUTABLE_STATEMENTS = {
    "update line amount": "UPDATE journal_lines SET debit = 1, functional_debit = 1 WHERE entry_id = :id AND debit > 0",
    "update line account": "UPDATE journal_lines SET account_code = '6120' WHERE entry_id = :id",
    "delete line": "DELETE FROM journal_lines WHERE entry_id = :id AND line_no = 2",
    "delete all lines": "DELETE FROM journal_lines WHERE entry_id = :id",
    "update entry": "UPDATE journal_entries SET description = 'edited' WHERE id = :id",
    "back to pending": "UPDATE journal_entries SET status = 'pending' WHERE id = :id",
    "re-date entry": "UPDATE journal_entries SET posting_date = posting_date WHERE id = :id",
    "delete entry": "DELETE FROM journal_entries WHERE id = :id",
    "add a line": (
        "INSERT INTO journal_lines (entry_id, line_no, entity_code, account_code, currency, debit, credit,"
        " functional_currency, functional_debit, functional_credit)"
        " VALUES (:id, 3, 'US01', '6100', 'USD', 5, 0, 'USD', 5, 0)"
    ),
}


@pytest.mark.parametrize("sql", IMMUTABLE_STATEMENTS.values(), ids=IMMUTABLE_STATEMENTS.keys())
def test_posted_entry_cannot_be_changed_by_raw_sql(books: Engine, posted: int, sql: str):
    with refused("immutable", PostedEntryImmutable), books.begin() as conn:
        conn.execute(text(sql), {"id": posted})
    with books.connect() as conn:
        assert counts(conn) == (1, 2)
        assert gl.account_balance(conn, "US01", "6100") == D("45000")
        assert conn.execute(select(journal_entries.c.description)).scalar_one() == "Write-off INV-WORKED-45000"


def test_pending_entry_can_still_be_corrected(books: Engine):
    # The guard is about *posted* rows: a pending draft may be edited or dropped (proves the tests above are
    # refused for the right reason, not because every UPDATE fails).
    with books.begin() as conn:
        eid = raw_entry(conn, "draft")
        raw_line(conn, eid, 1, "6100", "5", "0")
        raw_line(conn, eid, 2, "1100", "0", "5")
        conn.execute(
            text("UPDATE journal_lines SET debit = 6, functional_debit = 6 WHERE entry_id = :e AND line_no = 1"),
            {"e": eid},
        )
        conn.execute(
            text("UPDATE journal_lines SET credit = 6, functional_credit = 6 WHERE entry_id = :e AND line_no = 2"),
            {"e": eid},
        )
    with books.begin() as conn:
        conn.execute(text("DELETE FROM journal_lines WHERE entry_id = :e"), {"e": eid})
        conn.execute(text("DELETE FROM journal_entries WHERE id = :e"), {"e": eid})
        assert counts(conn) == (0, 0)


def test_entry_cannot_be_inserted_as_posted(books: Engine):
    with refused("inserted pending", LedgerError), books.begin() as conn:
        raw_entry(conn, "sneaky", status="posted")
    with books.connect() as conn:
        assert counts(conn) == (0, 0)


@pytest.mark.parametrize(
    "lines",
    [
        [("6100", "100", "0"), ("1100", "0", "99.99")],
        [("6100", "100", "0")],
        [],
        [("6100", "100", "0"), ("1100", "0", "50"), ("1190", "0", "50.0001")],
    ],
    ids=["off-by-a-cent", "one-line", "no-lines", "off-at-db-scale"],
)
def test_unbalanced_entry_cannot_be_flipped_to_posted(books: Engine, lines):
    with books.connect() as conn:
        with conn.begin():
            eid = raw_entry(conn, "unbalanced")
            for n, (acct, dr, cr) in enumerate(lines, start=1):
                raw_line(conn, eid, n, acct, dr, cr)
            with refused("unbalanced", UnbalancedEntry):
                # a nested savepoint keeps the outer transaction usable on PostgreSQL after the refusal
                with conn.begin_nested():
                    conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = :e"), {"e": eid})
            conn.rollback()
    with books.connect() as conn:
        assert counts(conn) == (0, 0)


def test_flip_to_posted_in_a_closed_period_refused(books: Engine):
    with books.begin() as conn:
        eid = raw_entry(conn, "late", day=date(2026, 10, 15))
        raw_line(conn, eid, 1, "6100", "10", "0")
        raw_line(conn, eid, 2, "1100", "0", "10")
        gl.close_period(conn, "US01", "2026-10", actor="controller")
    with refused("closed", ClosedPeriod), books.begin() as conn:
        conn.execute(text("UPDATE journal_entries SET status = 'posted' WHERE id = :e"), {"e": eid})
    with books.connect() as conn:
        assert conn.execute(select(journal_entries.c.status)).scalar_one() == "pending"


def test_postgres_refuses_unbalanced_lines_at_commit(pg_ledger: Engine):
    """Deferred constraint trigger: every statement succeeds, the COMMIT is what fails."""
    with pg_ledger.begin() as conn:
        factories.entity(conn)
    conn = pg_ledger.connect()
    try:
        trans = conn.begin()
        eid = raw_entry(conn, "pending-unbalanced")
        raw_line(conn, eid, 1, "6100", "100", "0")
        raw_line(conn, eid, 2, "1100", "0", "60")  # still pending: no row trigger objects
        with pytest.raises(IntegrityError, match="unbalanced journal entry refused at commit"):
            trans.commit()
    finally:
        conn.close()
    with pg_ledger.connect() as conn:
        assert counts(conn) == (0, 0)
    # The same rows, balanced, commit fine (the failure above was the balance check, not the statements).
    with pg_ledger.begin() as conn:
        eid = raw_entry(conn, "pending-balanced")
        raw_line(conn, eid, 1, "6100", "100", "0")
        raw_line(conn, eid, 2, "1100", "0", "100")
    with pg_ledger.connect() as conn:
        assert counts(conn) == (1, 2)


# --- audit log ---------------------------------------------------------------------------------------------------


def fill_audit(engine: Engine, n: int = 5) -> str:
    with engine.begin() as conn:
        for i in range(1, n + 1):
            audit.append(
                conn,
                actor=f"user{i}",
                action="test.event",
                object_type="thing",
                object_id=i,
                details={"i": i, "amount": D("1.50")},
            )
        return audit.head(conn)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 3",
        "DELETE FROM audit_log WHERE id = 3",
        "DELETE FROM audit_log",
    ],
)
def test_audit_log_is_append_only(ledger: Engine, sql: str):
    fill_audit(ledger)
    with refused("append-only", PostedEntryImmutable), ledger.begin() as conn:
        conn.exec_driver_sql(sql)
    with ledger.connect() as conn:
        assert audit.count(conn) == 5
        assert audit.verify(conn) == []


@pytest.mark.parametrize("table", ["audit_log", "journal_entries", "journal_lines"])
def test_postgres_refuses_truncate(pg_ledger: Engine, table: str):
    fill_audit(pg_ledger)
    with refused("append-only", PostedEntryImmutable), pg_ledger.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {table} CASCADE")
    with pg_ledger.connect() as conn:
        assert audit.count(conn) == 5


def disable_audit_guard(conn: Connection) -> None:
    """What an attacker with DDL rights does first; the hash chain must still catch what follows."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER trg_audit_no_update")
        conn.exec_driver_sql("DROP TRIGGER trg_audit_no_delete")
    else:
        conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER trg_audit_guard")


def test_intact_chain_verifies(ledger: Engine):
    fill_audit(ledger, 7)
    with ledger.connect() as conn:
        assert audit.verify(conn) == []
        rows = conn.execute(
            select(audit_log.c.id, audit_log.c.prev_hash, audit_log.c.row_hash).order_by(audit_log.c.id)
        ).all()
    assert audit_anchor.verify_anchored(ledger) == []
    assert [r.id for r in rows] == list(range(1, 8))
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.row_hash for a, b in pairwise(rows))


def test_verify_of_an_empty_log(ledger: Engine):
    with ledger.connect() as conn:
        assert audit.verify(conn) == []
        assert audit.head(conn) == audit.GENESIS
    assert audit_anchor.verify_anchored(ledger) == []


def test_edited_row_detected(ledger: Engine):
    fill_audit(ledger)
    with ledger.begin() as conn:
        disable_audit_guard(conn)
        conn.exec_driver_sql('UPDATE audit_log SET details = \'{"amount":"0.01","i":3}\' WHERE id = 3')
    with ledger.connect() as conn:
        findings = audit.verify(conn)
    assert [(f.row_id, "edited" in f.problem) for f in findings] == [(3, True)]


def test_edited_row_with_recomputed_hash_detected(ledger: Engine):
    """Without the key, the best an insider can do is the old unkeyed SHA-256 of the edited row: it is no MAC."""
    fill_audit(ledger)
    with ledger.begin() as conn:
        disable_audit_guard(conn)
        r = conn.execute(select(audit_log).where(audit_log.c.id == 3)).one()
        fields = [r.prev_hash, "3", r.recorded_at, "mallory", r.action, r.object_type, r.object_id, r.details]
        payload = "\x1f".join(fields)
        forged = hashlib.sha256(payload.encode()).hexdigest()
        conn.execute(text("UPDATE audit_log SET actor = 'mallory', row_hash = :h WHERE id = 3"), {"h": forged})
    with ledger.connect() as conn:
        findings = audit.verify(conn)
    assert [(f.row_id, "MAC" in f.problem or "prev_hash" in f.problem) for f in findings] == [(3, True), (4, True)]


def test_deleted_middle_row_detected(ledger: Engine):
    fill_audit(ledger)
    with ledger.begin() as conn:
        disable_audit_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id = 3")
    with ledger.connect() as conn:
        findings = audit.verify(conn)
    assert {f.row_id for f in findings} == {4}
    problems = " ".join(f.problem for f in findings)
    assert "gap" in problems and "prev_hash" in problems


def test_tail_truncation_detected_by_the_checkpoint(ledger: Engine):
    fill_audit(ledger)
    with ledger.begin() as conn:
        disable_audit_guard(conn)
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id >= 4")
    with ledger.connect() as conn:
        # The remaining prefix is a valid chain: only the head checkpointed outside the ledger reveals the removal.
        assert audit.verify(conn) == []
    findings = audit_anchor.verify_anchored(ledger)
    assert len(findings) == 1 and "tail truncated" in findings[0].problem and "row 5" in findings[0].problem
