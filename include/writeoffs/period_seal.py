"""Closed periods are sealed: their totals are recorded at close and re-checked by every reconciliation.

Closing a period (``writeoffs.ledger.close_period``) records, in the ``period.close`` audit row, the totals of the
entity's posted lines in that period per (account, currency): line count, debits, credits, functional debits and
credits, and the sum of the line ids. The audit row is chained under the audit key and anchored outside the ledger
(``writeoffs.audit``), so the seal cannot be rewritten without the key. Reconciliation (check ``period_seals``)
recomputes the totals of every closed period in one grouped query and reports each period whose lines no longer
add up to its seal: a line edited, moved to another account, added or deleted after the close (the triggers
refuse all of these; this catches whoever got around them). A closed period without a seal (closed by raw SQL,
or before seals existed) is a break too: fail closed.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select

from writeoffs.db.schema import audit_log, fiscal_periods, journal_entries, journal_lines

SEAL_VERSION = 1
_Row = tuple[str, str, int, str, str, str, str, int]


def _money(value: object) -> str:
    return format(Decimal(value or 0).quantize(Decimal("0.0001")), "f")  # type: ignore[arg-type]


def _totals_query(*where: Any, closed_only: bool = False) -> Any:
    """Posted lines' totals per (entity, period, account, currency); ``closed_only``: of closed periods only."""
    jl, je, fp = journal_lines, journal_entries, fiscal_periods
    source = jl.join(je, je.c.id == jl.c.entry_id)
    if closed_only:
        source = source.join(
            fp, and_(fp.c.entity_code == je.c.entity_code, fp.c.period == je.c.period, fp.c.status == "closed")
        )
    return (
        select(
            je.c.entity_code,
            je.c.period,
            jl.c.account_code,
            jl.c.currency,
            func.count(),
            func.sum(jl.c.debit),
            func.sum(jl.c.credit),
            func.sum(jl.c.functional_debit),
            func.sum(jl.c.functional_credit),
            func.sum(jl.c.id),
        )
        .select_from(source)
        .where(je.c.status == "posted", *where)
        .group_by(je.c.entity_code, je.c.period, jl.c.account_code, jl.c.currency)
        .order_by(je.c.entity_code, je.c.period, jl.c.account_code, jl.c.currency)
    )


def _row(r: Any) -> _Row:
    return (str(r[2]), str(r[3]), int(r[4]), _money(r[5]), _money(r[6]), _money(r[7]), _money(r[8]), int(r[9] or 0))


def seal(conn: Connection, entity: str, period: str) -> dict[str, Any]:
    """The seal of one period (audit details of ``period.close``): totals per (account, currency) and their digest."""
    je = journal_entries
    totals = [list(_row(r)) for r in conn.execute(_totals_query(je.c.entity_code == entity, je.c.period == period))]
    digest = hashlib.sha256(json.dumps(totals, separators=(",", ":")).encode("utf-8")).hexdigest()
    return {"seal_version": SEAL_VERSION, "totals": totals, "digest": digest}


_COLUMNS = ("lines", "debit", "credit", "functional_debit", "functional_credit", "line_id_sum")


def check_period_seals(conn: Connection, as_of: date, tolerance: Any) -> list[Any]:
    """Every closed period's posted lines still add up to the seal recorded when it was closed."""
    from writeoffs.reconcile.model import MAX_DOCUMENTS, Break

    fp = fiscal_periods
    closed = [
        (r.entity_code, r.period)
        for r in conn.execute(select(fp.c.entity_code, fp.c.period).where(fp.c.status == "closed"))
    ]
    if not closed:
        return []
    sealed: dict[str, dict[str, Any]] = {}
    for object_id, details in conn.execute(
        select(audit_log.c.object_id, audit_log.c.details)
        .where(audit_log.c.action == "period.close", audit_log.c.object_type == "fiscal_period")
        .order_by(audit_log.c.id)
    ):
        body = json.loads(details)
        if body.get("seal_version") == SEAL_VERSION:
            sealed[str(object_id)] = body  # the latest seal of a period wins (a period closes once)
    actual: dict[tuple[str, str], dict[tuple[str, str], _Row]] = defaultdict(dict)
    for r in conn.execute(_totals_query(closed_only=True)):
        row = _row(r)
        actual[(str(r[0]), str(r[1]))][(row[0], row[1])] = row
    out = []
    for entity, period in sorted(closed):
        body = sealed.get(f"{entity}:{period}")
        if body is None:
            out.append(
                Break(
                    check="period_seals",
                    message=f"closed period {period} of {entity} has no seal (closed outside close_period?)",
                    entity=entity,
                )
            )
            continue
        want = {(t[0], t[1]): tuple(t) for t in body["totals"]}
        have = actual.get((entity, period), {})
        docs = []
        for key in sorted(set(want) | set(have)):
            w, h = want.get(key), have.get(key)
            if w != h:
                docs.append(
                    {
                        "account": key[0],
                        "currency": key[1],
                        "sealed": dict(zip(_COLUMNS, w[2:], strict=True)) if w else None,
                        "now": dict(zip(_COLUMNS, h[2:], strict=True)) if h else None,
                    }
                )
        if docs:
            out.append(
                Break(
                    check="period_seals",
                    message=f"closed period {period} of {entity} no longer matches its seal on {len(docs)}"
                    f" account/currency total(s): posted lines changed after the close",
                    entity=entity,
                    documents=tuple(docs[:MAX_DOCUMENTS]),
                )
            )
    return out
