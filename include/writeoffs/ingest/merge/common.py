"""What every part of the merge shares: the statuses the ledger owns (never overwritten from a source), the logger,
and :func:`_sql`, which runs one set-wise statement and returns its row count.

The merge's statements live in ``sql/*.sql`` beside this module (:mod:`writeoffs.db.sqlfiles`), moved there verbatim
from the f-strings that built them: they are tuned (comments in the files and the modules say why), so the text
PostgreSQL receives is kept as it was. Status lists travel as expanding bind parameters (:data:`STATUS_BINDS`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from sqlalchemy import Connection, Date, TextClause, bindparam

from writeoffs.accounting.status import LEDGER_OWNED_STATUSES, RECOVERY_STATUSES, InvoiceStatus
from writeoffs.db import dialect
from writeoffs.db.sqlfiles import sql

log = logging.getLogger("writeoffs.ingest.merge")

#: Statuses the ledger owns: a source never overwrites them (one home: writeoffs.accounting.status).
PROTECTED = LEDGER_OWNED_STATUSES

#: The status lists the statements name as bind parameters (plain ``str``: the drivers bind them as text).
STATUS_BINDS: dict[str, list[str]] = {
    "protected": [str(s) for s in PROTECTED],
    # Statuses a source update keeps while the invoice still has an open balance (the ledger declared them).
    "kept_while_open": [str(s) for s in (InvoiceStatus.CHARGED_OFF, InvoiceStatus.REVERSED)],
    "recovery": [str(s) for s in RECOVERY_STATUSES],
}


_PARAM = re.compile(r"(?<![:\w]):(\w+)")


def statement(conn: Connection, name: str) -> TextClause:
    """The merge statement ``name`` (``sql/<name>[.<dialect>].sql``) with its typed and expanding parameters bound:
    ``:d`` is a date, the status lists of :data:`STATUS_BINDS` are expanding (values of the statement itself)."""
    stmt = sql(__package__, name, dialect.of(conn))
    return _typed(stmt)


def _typed(stmt: TextClause) -> TextClause:
    named = set(_PARAM.findall(stmt.text))  # the bind parameters text() itself finds (":x", not "::x")
    binds = [bindparam(k, v, expanding=True) for k, v in STATUS_BINDS.items() if k in named]
    if "d" in named:
        binds.append(bindparam("d", type_=Date))
    return stmt.bindparams(*binds) if binds else stmt


def _sql(conn: Connection, stmt: TextClause | str, params: dict[str, Any]) -> int:
    """Run one set-wise statement (a name of ``sql/``, or a :func:`statement`); returns its row count."""
    if isinstance(stmt, str):
        stmt = statement(conn, stmt)
    t0 = time.perf_counter()
    n = conn.execute(stmt, params).rowcount or 0
    log.debug("%.2fs %d rows: %s", time.perf_counter() - t0, n, " ".join(stmt.text.split())[:90])
    return n
