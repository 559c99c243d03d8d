"""The aging snapshot's SHARE lock on ``invoices``, attacked at the moments it must hold.

On a big PostgreSQL ledger the snapshot is copied with the per-row foreign-key trigger off, and its keys (invoice,
customer) are not checked again: they hold because every one was read from an invoice row while no writer could
change ``invoices`` (``writeoffs.aging.compute_aging``). So the lock must be held from *before* the copy until the
commit. Here a second connection tries to change an invoice at the copy's first statement, after the snapshot was
written and after the commit: it must wait (and give up on its lock timeout) the first two times, and get through
the third. Without the lock, or with the lock taken after the copy, the first attempt gets through.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine, event, text, update
from sqlalchemy.exc import OperationalError

from tests import factories as f
from writeoffs import aging
from writeoffs.db.schema import invoices

AS_OF = date(2026, 11, 24)


def _try_to_change_an_invoice(engine: Engine, invoice_id: int) -> str:
    with engine.connect() as other:
        other.execute(text("SET lock_timeout = '300ms'"))
        try:
            other.execute(update(invoices).where(invoices.c.id == invoice_id).values(description="changed"))
        except OperationalError as exc:
            other.rollback()
            return "waited" if "lock timeout" in str(exc.orig) else f"failed: {exc.orig}"
        other.rollback()  # the attempt only probes the lock: nothing is kept
        return "changed"


def test_no_writer_changes_an_invoice_from_before_the_bulk_copy_to_the_commit(pg_ledger: Engine, monkeypatch) -> None:
    with pg_ledger.begin() as conn:
        f.entity(conn)
        cid = f.customer(conn)
        ids = [f.invoice(conn, cid, amount="100.00", days_past_due=40 * n) for n in range(1, 4)]
    monkeypatch.setattr(aging, "BULK_MIN_ROWS", 1)  # the big-ledger path on three invoices
    seen: dict[str, str] = {}

    def at_statement(conn, cursor, statement, params, context, executemany) -> None:
        sql = " ".join(statement.split())
        if "session_replication_role = replica" in sql:
            seen["bulk"] = "on"
        if sql.startswith("INSERT INTO aging_snapshots") and "at_copy" not in seen:
            seen["at_copy"] = _try_to_change_an_invoice(pg_ledger, ids[0])

    event.listen(pg_ledger, "before_cursor_execute", at_statement)
    try:
        with pg_ledger.begin() as conn:
            aging.compute_aging(conn, AS_OF)
            seen["before_commit"] = _try_to_change_an_invoice(pg_ledger, ids[1])
    finally:
        event.remove(pg_ledger, "before_cursor_execute", at_statement)
    seen["after_commit"] = _try_to_change_an_invoice(pg_ledger, ids[2])

    assert seen.get("bulk") == "on", "the test must exercise the bulk path (FK trigger off for the copy)"
    assert (seen["at_copy"], seen["before_commit"], seen["after_commit"]) == ("waited", "waited", "changed")
