"""What every part of the merge shares: the statuses the ledger owns (never overwritten from a source), the logger,
and :func:`_sql`, which runs one set-wise statement and returns its row count.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Connection, Date, bindparam, text

from writeoffs.accounting.status import LEDGER_OWNED_STATUSES, InvoiceStatus, sql_list

log = logging.getLogger("writeoffs.ingest.merge")

#: Statuses the ledger owns: a source never overwrites them (one home: writeoffs.accounting.status).
PROTECTED = LEDGER_OWNED_STATUSES
_PROTECTED_SQL = sql_list(PROTECTED)
#: Statuses a source update keeps while the invoice still has an open balance (the ledger declared them).
_KEPT_WHILE_OPEN_SQL = sql_list((InvoiceStatus.CHARGED_OFF, InvoiceStatus.REVERSED))


def _sql(conn: Connection, statement: str, params: dict[str, Any]) -> int:
    stmt = text(statement)
    if ":d" in statement:
        stmt = stmt.bindparams(bindparam("d", type_=Date))
    t0 = time.perf_counter()
    n = conn.execute(stmt, params).rowcount or 0
    log.debug("%.2fs %d rows: %s", time.perf_counter() - t0, n, " ".join(statement.split())[:90])
    return n
