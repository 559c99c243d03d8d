"""Ledgers in different schemas of one PostgreSQL database never wait for each other's locks.

Found running the suite in parallel: the fiscal-period guard (migration 0009) took an advisory lock keyed by the
entity only, so two ledgers adding periods for two entities in opposite orders deadlocked. Each attack holds a lock
in ledger A's transaction and asks for the same purpose in ledger B with a short lock timeout: it must not wait.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.exc import OperationalError

from tests.factories import entity
from writeoffs.db.locks import ALLOWANCE_ESTIMATE, AUDIT_APPEND, ledger_lock
from writeoffs.db.schema import fiscal_periods


def _period(entity: str) -> dict:
    return {"entity_code": entity, "period": "2031-01", "start_date": date(2031, 1, 1), "end_date": date(2031, 1, 31)}


@pytest.mark.postgres
def test_fiscal_period_writers_of_two_ledgers_do_not_wait_for_each_other(make_ledger) -> None:
    a: Engine = make_ledger("postgresql")
    b: Engine = make_ledger("postgresql")
    for ledger in (a, b):
        with ledger.begin() as conn:
            entity(conn, "US01", "USD")
            entity(conn, "EU01", "EUR", method="allowance")
    with a.connect() as ca, b.connect() as cb:
        ta, tb = ca.begin(), cb.begin()
        ca.execute(insert(fiscal_periods).values(_period("US01")))
        cb.execute(text("SET LOCAL lock_timeout = '1s'"))
        cb.execute(insert(fiscal_periods).values(_period("US01")))  # same entity, other ledger: no wait
        cb.execute(insert(fiscal_periods).values(_period("EU01")))
        ca.execute(text("SET LOCAL lock_timeout = '1s'"))
        ca.execute(insert(fiscal_periods).values(_period("EU01")))  # the opposite order: no deadlock
        ta.commit()
        tb.commit()


@pytest.mark.postgres
@pytest.mark.parametrize("purpose", [AUDIT_APPEND, ALLOWANCE_ESTIMATE])
def test_ledger_locks_are_per_ledger(make_ledger, purpose: int) -> None:
    a: Engine = make_ledger("postgresql")
    b: Engine = make_ledger("postgresql")
    with a.connect() as ca, b.connect() as cb, a.connect() as ca2:
        with ca.begin():
            ledger_lock(ca, purpose)
            with cb.begin():
                cb.execute(text("SET LOCAL lock_timeout = '1s'"))
                ledger_lock(cb, purpose)  # another ledger: free
            with ca2.begin(), pytest.raises(Exception, match="lock timeout"):
                ca2.execute(text("SET LOCAL lock_timeout = '200ms'"))
                ledger_lock(ca2, purpose)  # the same ledger: held (the lock is real)


@pytest.mark.parametrize("purpose", [AUDIT_APPEND, ALLOWANCE_ESTIMATE])
def test_sqlite_ledger_lock_holds_the_writer_lock_from_its_call(make_ledger, purpose: int) -> None:
    """SQLite (pysqlite) starts a transaction only at the first write: a read before it runs outside any
    transaction, so two processes appending audit rows could both read the same last row and both take its id + 1
    (seen under load: "audit log is append-only", audit id used twice, in the demo's confirm step). The lock must
    be the database's writer lock, taken when ``ledger_lock`` is called, even as the transaction's first statement."""
    a: Engine = make_ledger("sqlite")
    other = create_engine(a.url, connect_args={"timeout": 0.2})
    try:
        with a.connect() as ca, ca.begin():
            ledger_lock(ca, purpose)
            with other.connect() as cb, cb.begin(), pytest.raises(OperationalError, match="locked"):
                ledger_lock(cb, purpose)  # waits for the first holder, then gives up after its busy timeout
    finally:
        other.dispose()


def test_sqlite_concurrent_audit_appends_keep_one_chain(make_ledger, tmp_path) -> None:
    """Two processes appending audit rows at once, each append its own transaction starting with the append."""
    import subprocess
    import sys

    a: Engine = make_ledger("sqlite")
    script = tmp_path / "append.py"
    script.write_text(
        "import sys\n"
        "from writeoffs.db.engine import make_engine\n"
        "from writeoffs import audit\n"
        "e = make_engine(sys.argv[1])\n"
        "for i in range(60):\n"
        "    with e.begin() as c:\n"
        "        audit.append(c, actor='system', action='test.append', object_type='test', object_id=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, str(script), str(a.url)], stderr=subprocess.PIPE) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    from writeoffs import audit

    with a.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'test.append'")).scalar_one() == 120
        assert audit.verify(conn) == []


def test_a_locked_row_read_first_in_a_transaction_keeps_other_writers_out(ledger: Engine) -> None:
    """``locked``: the row lock every read-then-change uses (a batch before posting, an invoice before a recovery,
    an ingest batch before its merge). Held from the SELECT to the commit, even as the transaction's first statement
    (on SQLite, a plain read first would not lock anything), and only the rows asked for on PostgreSQL."""
    from writeoffs.db.locks import locked
    from writeoffs.db.schema import legal_entities

    with ledger.begin() as conn:
        entity(conn, "US01", "USD")
        entity(conn, "EU01", "EUR", method="allowance")
    postgres = ledger.dialect.name == "postgresql"
    other = ledger if postgres else create_engine(ledger.url, connect_args={"timeout": 0.2})
    us = legal_entities.c.code == "US01"
    try:
        with ledger.connect() as ca, ca.begin():
            row = ca.execute(locked(ca, legal_entities, us, columns=(legal_entities.c.code,))).one()
            assert row.code == "US01"
            with other.connect() as cb, cb.begin(), pytest.raises(OperationalError, match=r"lock timeout|locked"):
                if postgres:
                    cb.execute(text("SET LOCAL lock_timeout = '200ms'"))
                cb.execute(locked(cb, legal_entities, us)).one()  # waits for the holder, then gives up
            if postgres:  # another row is not held
                with other.connect() as cb, cb.begin():
                    cb.execute(text("SET LOCAL lock_timeout = '1s'"))
                    assert cb.execute(locked(cb, legal_entities, legal_entities.c.code == "EU01")).one()
    finally:
        if not postgres:
            other.dispose()
