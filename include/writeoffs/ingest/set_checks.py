"""Staging's checks that need a whole batch (duplicate keys, inconsistent payments), done set-wise in SQL after
the rows are loaded: the rows they hit move from the staging table to the quarantine (or the batch is refused)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Connection, text

from writeoffs.errors import InputError
from writeoffs.ingest.fields import NATURAL_KEYS
from writeoffs.ingest.tables import STAGING


def quarantine_set_checks(
    conn: Connection, source: str, mode: str, dataset: str, batch_id: int, *, keys_unique: bool = False
) -> Counter[str]:
    """Checks that need the whole batch (duplicate keys, inconsistent payments), done set-wise in SQL.

    Every occurrence of a duplicate key is quarantined: nothing tells us which of them is right. ``keys_unique``
    (established while loading) skips the duplicate search, a million-key aggregation in SQL.
    """
    table = STAGING[dataset].name
    checks: list[tuple[str, str, str, str]] = []  # (reason, field, key expression list, having)
    if dataset in NATURAL_KEYS and not keys_unique:
        keys = ", ".join(f"COALESCE({k}, '')" for k in NATURAL_KEYS[dataset])
        checks.append(("duplicate_key", NATURAL_KEYS[dataset][1], keys, "COUNT(*) > 1"))
    if dataset == "payments":
        checks.append(
            (
                "inconsistent_payment",
                "payment_ref",
                "entity, payment_ref",
                "COUNT(DISTINCT customer_ref) > 1 OR COUNT(DISTINCT payment_date) > 1 OR COUNT(DISTINCT currency) > 1"
                " OR COUNT(DISTINCT amount) > 1 OR COALESCE(SUM(applied_amount), 0) > MAX(amount)",
            )
        )
    moved: Counter[str] = Counter()
    b = {"b": batch_id}
    for reason, fld, keys, having in checks:
        # Identifiers and expressions are constants of this module, never data: values travel as bind parameters.
        groups = f"SELECT {keys} FROM {table} WHERE batch_id = :b GROUP BY {keys} HAVING {having}"
        hit = f"({keys}) IN ({groups})"
        first = conn.execute(
            text(
                f"SELECT source_file, source_row, {NATURAL_KEYS.get(dataset, ('entity', 'payment_ref'))[1]} AS ref "
                f"FROM {table} WHERE batch_id = :b AND {hit} ORDER BY source_file, source_row LIMIT 1"
            ),
            b,
        ).first()
        if first is None:
            continue
        message = {
            "duplicate_key": f"{fld} appears more than once in this batch for the same key "
            f"({', '.join(NATURAL_KEYS.get(dataset, ()))})",
            "inconsistent_payment": "rows of this payment disagree on customer, date, currency or amount, "
            "or allocate more than the payment",
        }[reason]
        if mode == "reject":
            raise InputError(
                f"{reason}: {message}: {first.ref!r}",
                source=source,
                file=first.source_file,
                row=first.source_row,
                field=fld,
            )
        n = conn.execute(
            text(
                "INSERT INTO ingest_quarantine"
                " (batch_id, dataset, source_file, source_row, field, reason, message, raw) "
                f"SELECT batch_id, :ds, source_file, source_row, :fld, :reason, :msg || ': ' || {fld}, NULL "
                f"FROM {table} WHERE batch_id = :b AND {hit}"
            ),
            {**b, "ds": dataset, "fld": fld, "reason": reason, "msg": message},
        ).rowcount
        conn.execute(text(f"DELETE FROM {table} WHERE batch_id = :b AND {hit}"), b)
        moved[reason] += n
    return moved
