"""Staging's checks that need a whole batch (duplicate keys, inconsistent payments), done set-wise in SQL after
the rows are loaded: the rows they hit move from the staging table to the quarantine (or the batch is refused)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, delete, func, insert, literal, null, or_, select, tuple_

from writeoffs.errors import InputError
from writeoffs.ingest.fields import NATURAL_KEYS
from writeoffs.ingest.tables import STAGING, ingest_quarantine

_MESSAGES = {
    "inconsistent_payment": "rows of this payment disagree on customer, date, currency or amount, "
    "or allocate more than the payment",
}


def _checks(t: Table, dataset: str, keys_unique: bool) -> list[tuple[str, str, list[Any], ColumnElement[bool]]]:
    """The checks of ``dataset``: (reason, field, key expressions, HAVING condition on a group of keys)."""
    checks: list[tuple[str, str, list[Any], ColumnElement[bool]]] = []
    if dataset in NATURAL_KEYS and not keys_unique:
        # The empty string is rendered inline: the grouped and the selected key expressions must be the same text.
        empty = literal("", literal_execute=True)
        keys = [func.coalesce(t.c[k], empty) for k in NATURAL_KEYS[dataset]]
        checks.append(("duplicate_key", NATURAL_KEYS[dataset][1], keys, func.count() > 1))
    if dataset == "payments":
        c = t.c
        having = or_(
            func.count(c.customer_ref.distinct()) > 1,
            func.count(c.payment_date.distinct()) > 1,
            func.count(c.currency.distinct()) > 1,
            func.count(c.amount.distinct()) > 1,
            func.coalesce(func.sum(c.applied_amount), 0) > func.max(c.amount),
        )
        checks.append(("inconsistent_payment", "payment_ref", [c.entity, c.payment_ref], having))
    return checks


def quarantine_set_checks(
    conn: Connection, source: str, mode: str, dataset: str, batch_id: int, *, keys_unique: bool = False
) -> Counter[str]:
    """Checks that need the whole batch (duplicate keys, inconsistent payments), done set-wise in SQL.

    Every occurrence of a duplicate key is quarantined: nothing tells us which of them is right. ``keys_unique``
    (established while loading) skips the duplicate search, a million-key aggregation in SQL.
    """
    t = STAGING[dataset]
    moved: Counter[str] = Counter()
    for reason, fld, keys, having in _checks(t, dataset, keys_unique):
        ref = t.c[NATURAL_KEYS.get(dataset, ("entity", "payment_ref"))[1]]
        groups = select(*keys).where(t.c.batch_id == batch_id).group_by(*keys).having(having).correlate(None)
        hit = (t.c.batch_id == batch_id) & tuple_(*keys).in_(groups)
        first = conn.execute(
            select(t.c.source_file, t.c.source_row, ref.label("ref"))
            .where(hit)
            .order_by(t.c.source_file, t.c.source_row)
            .limit(1)
        ).first()
        if first is None:
            continue
        message = _MESSAGES.get(reason) or (
            f"{fld} appears more than once in this batch for the same key ({', '.join(NATURAL_KEYS.get(dataset, ()))})"
        )
        if mode == "reject":
            raise InputError(
                f"{reason}: {message}: {first.ref!r}",
                source=source,
                file=first.source_file,
                row=first.source_row,
                field=fld,
            )
        rows = select(
            t.c.batch_id,
            literal(dataset),
            t.c.source_file,
            t.c.source_row,
            literal(fld),
            literal(reason),
            literal(message) + ": " + t.c[fld],
            null(),
        ).where(hit)
        columns = ["batch_id", "dataset", "source_file", "source_row", "field", "reason", "message", "raw"]
        # preserve_rowcount: SQLAlchemy reads an INSERT's row count only when asked (else -1 on PostgreSQL).
        moving = insert(ingest_quarantine).from_select(columns, rows).execution_options(preserve_rowcount=True)
        n = conn.execute(moving).rowcount
        conn.execute(delete(t).where(hit))
        moved[reason] += n
    return moved
