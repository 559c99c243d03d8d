"""Ledgers in different schemas of one PostgreSQL database never wait for each other's locks.

Found running the suite in parallel: the fiscal-period guard (migration 0009) took an advisory lock keyed by the
entity only, so two ledgers adding periods for two entities in opposite orders deadlocked. Each attack holds a lock
in ledger A's transaction and asks for the same purpose in ledger B with a short lock timeout: it must not wait.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, insert, text

from tests.factories import entity
from writeoffs.db.locks import ALLOWANCE_ESTIMATE, AUDIT_APPEND, ledger_lock
from writeoffs.db.schema import fiscal_periods

pytestmark = pytest.mark.postgres


def _period(entity: str) -> dict:
    return {"entity_code": entity, "period": "2031-01", "start_date": date(2031, 1, 1), "end_date": date(2031, 1, 31)}


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
