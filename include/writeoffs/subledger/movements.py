"""Declaring why a balance moves (:func:`movement`): read by the triggers that write the movements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from sqlalchemy import Connection, text

from writeoffs.db import dialect
from writeoffs.db.schema import MOVEMENT_KINDS
from writeoffs.errors import WriteoffError

#: The SQLite table its triggers read the declared context from (migration 0013; SQLite only).
_SQLITE_CONTEXT = "invoice_movement_context"
_PG_SETTINGS = ("writeoffs.movement_kind", "writeoffs.movement_date", "writeoffs.movement_ref")


@contextmanager
def movement(conn: Connection, kind: str, effective_date: date, ref: str | None = None) -> Iterator[None]:
    """Declare, for the statements run inside, why invoices move: ``kind``, business date, document.

    The triggers of migration 0013 read it; it is cleared on the way out so that a later statement of the same
    transaction cannot borrow it. (On an error the transaction is rolled back, and the declaration with it.)
    """
    if kind not in MOVEMENT_KINDS or kind in ("opening", "direct"):
        raise WriteoffError(f"unknown movement kind {kind!r}")
    ref = None if ref is None else str(ref)[:200]
    if dialect.of(conn).session_settings:
        _pg_set(conn, kind, effective_date.isoformat(), ref or "")
        yield
        _pg_set(conn, "", "", "")
        return
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))
    conn.execute(
        text(f"INSERT INTO {_SQLITE_CONTEXT} (kind, effective_date, ref) VALUES (:k, :d, :r)"),
        {"k": kind, "d": effective_date.isoformat(), "r": ref},
    )
    yield
    conn.execute(text(f"DELETE FROM {_SQLITE_CONTEXT}"))


def _pg_set(conn: Connection, kind: str, day: str, ref: str) -> None:
    conn.execute(
        text("SELECT set_config(:a, :k, true), set_config(:b, :d, true), set_config(:c, :r, true)"),
        dict(zip(("a", "b", "c"), _PG_SETTINGS, strict=True)) | {"k": kind, "d": day, "r": ref},
    )
