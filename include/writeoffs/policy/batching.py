"""Group candidates into approval batches: one per (as-of date, entity, currency, tier, policy).

``batch_key = f"{as_of}:{entity}:{currency}:{tier}:{policy_hash[:12]}"`` is unique, so re-running the same date
with the same policy finds the same batches. ``batch_hash`` is sha256 over the batch's items as the approver sees
them (see :func:`items_digest`); approval and posting recompute it with :func:`batch_items_hash` to prove the batch
was not changed after approval.

A batch that has left ``proposed`` (being approved, approved, posted, ...) is never changed: a candidate that would
join it (new data on a re-run of the same date) is marked ``skipped`` instead, with the reason, and will be
picked up by the next as-of date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, String, and_, func, literal, select, text, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from writeoffs.db.schema import invoices, writeoff_batches, writeoffs
from writeoffs.money import money_str
from writeoffs.policy.schema import Policy
from writeoffs.policy.sqlx import typed

_Q4 = Decimal("0.0001")


def batch_key(as_of: date, entity: str, currency: str, tier: str, policy_hash: str) -> str:
    return f"{as_of.isoformat()}:{entity}:{currency}:{tier}:{policy_hash[:12]}"


def items_digest(items: Iterable[tuple[str, Decimal, str]]) -> str:
    """sha256 over ``invoice_ref|amount|reason`` lines sorted by invoice ref (code-point order), amount at 4 dp.

    The same bytes are produced by the PostgreSQL aggregate in :func:`_hash_batches_pg` (``COLLATE "C"`` sorts by
    code point as Python does; ``NUMERIC(20,4)::text`` prints 4 decimals as the quantize here).
    """
    lines = sorted(f"{ref}|{Decimal(amount).quantize(_Q4):f}|{reason}" for ref, amount, reason in items)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def batch_items_hash(conn: Connection, batch_id: int) -> str:
    """Recompute a batch's hash from its current items (for approval/posting to compare with ``batch_hash``)."""
    rows = conn.execute(
        select(invoices.c.invoice_ref, writeoffs.c.amount, writeoffs.c.reason_code)
        .select_from(writeoffs.join(invoices, invoices.c.id == writeoffs.c.invoice_id))
        .where(writeoffs.c.batch_id == batch_id)
    ).all()
    return items_digest((r[0], r[1], r[2]) for r in rows)


def _hash_batches_pg(conn: Connection, ids: list[int]) -> None:
    # Set-wise on the server: the items of a large batch never travel to Python.
    conn.execute(
        text(
            """
            UPDATE writeoff_batches b SET batch_hash = s.h
            FROM (
                SELECT w.batch_id,
                       encode(sha256(convert_to(string_agg(
                           i.invoice_ref || '|' || CAST(w.amount AS NUMERIC(20, 4))::text || '|' || w.reason_code,
                           E'\\n' ORDER BY (i.invoice_ref || '|' || CAST(w.amount AS NUMERIC(20, 4))::text
                                            || '|' || w.reason_code) COLLATE "C"), 'UTF8')), 'hex') AS h
                FROM writeoffs w JOIN invoices i ON i.id = w.invoice_id
                WHERE w.batch_id = ANY(:ids)
                GROUP BY w.batch_id
            ) s
            WHERE b.id = s.batch_id
            """
        ),
        {"ids": ids},
    )


def _hash_batches_python(conn: Connection, ids: list[int]) -> None:
    for bid in ids:
        conn.execute(
            update(writeoff_batches).where(writeoff_batches.c.id == bid).values(batch_hash=batch_items_hash(conn, bid))
        )


@dataclass(frozen=True, slots=True)
class BatchingResult:
    batches: int
    assigned: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "assigned": self.assigned, "skipped": self.skipped}


def build_batches(
    conn: Connection,
    policy: Policy,
    as_of: date,
    *,
    prepared_by: str = "system",
    dag_run_id: str | None = None,
) -> BatchingResult:
    """Create/complete the ``proposed`` batches of (as_of, policy) and attach unbatched candidates to them."""
    w, i, b = writeoffs, invoices, writeoff_batches
    mine = and_(w.c.as_of_date == as_of, w.c.policy_hash == policy.content_hash)
    key = (
        literal(f"{as_of.isoformat()}:", String())
        + i.c.entity_code
        + literal(":", String())
        + w.c.currency
        + literal(":", String())
        + w.c.tier
        + literal(f":{policy.short_hash()}", String())
    )
    groups = (
        select(
            key.label("batch_key"),
            i.c.entity_code,
            w.c.currency,
            w.c.tier,
            typed(as_of, Date()).label("as_of_date"),
            literal(policy.version, String()).label("policy_version"),
            literal(policy.content_hash, String()).label("policy_hash"),
            literal("proposed", String()).label("status"),
            literal(prepared_by, String()).label("prepared_by"),
            literal(dag_run_id, String()).label("dag_run_id"),
        )
        .select_from(w.join(i, i.c.id == w.c.invoice_id))
        .where(mine, w.c.batch_id.is_(None), w.c.status == "candidate")
        .group_by(i.c.entity_code, w.c.currency, w.c.tier)
    )
    cols = [
        "batch_key",
        "entity_code",
        "currency",
        "tier",
        "as_of_date",
        "policy_version",
        "policy_hash",
        "status",
        "prepared_by",
        "dag_run_id",
    ]
    ins = (pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert)(b)
    conn.execute(ins.from_select(cols, groups).on_conflict_do_nothing())

    target = and_(
        b.c.as_of_date == as_of,
        b.c.policy_hash == policy.content_hash,
        b.c.entity_code == i.c.entity_code,
        b.c.currency == w.c.currency,
        b.c.tier == w.c.tier,
        i.c.id == w.c.invoice_id,
    )
    unbatched = and_(mine, w.c.batch_id.is_(None), w.c.status == "candidate")
    assigned = conn.execute(
        update(w).where(unbatched, target, b.c.status == "proposed").values(batch_id=b.c.id)
    ).rowcount
    # The batch was already decided: changing it now would change what the approver approved.
    skipped = conn.execute(
        update(w)
        .where(unbatched, target, b.c.status != "proposed")
        .values(status="skipped", skip_reason="batch already decided; re-selected on a later as-of date")
    ).rowcount

    open_batches = [
        r.id
        for r in conn.execute(
            select(b.c.id).where(
                b.c.as_of_date == as_of, b.c.policy_hash == policy.content_hash, b.c.status == "proposed"
            )
        )
    ]
    if open_batches:
        count_q = select(func.count()).where(w.c.batch_id == b.c.id).scalar_subquery()
        total_q = select(func.coalesce(func.sum(w.c.amount), 0)).where(w.c.batch_id == b.c.id).scalar_subquery()
        conn.execute(
            update(b).where(b.c.id.in_(open_batches)).values(item_count=count_q, total_amount=total_q)
        )
        if conn.dialect.name == "postgresql":
            _hash_batches_pg(conn, open_batches)
        else:
            _hash_batches_python(conn, open_batches)
    return BatchingResult(len(open_batches), max(assigned or 0, 0), max(skipped or 0, 0))


def batch_table(conn: Connection, policy_hash: str, as_of: date) -> list[dict[str, Any]]:
    """Per-batch summary (count, total, by reason) for logs and XCom; money as strings."""
    b, w = writeoff_batches, writeoffs
    rows = conn.execute(
        select(
            b.c.id,
            b.c.batch_key,
            b.c.entity_code,
            b.c.currency,
            b.c.tier,
            b.c.status,
            b.c.item_count,
            b.c.total_amount,
            b.c.batch_hash,
            w.c.reason_code,
            func.count(w.c.id),
            func.sum(w.c.amount),
        )
        .select_from(b.outerjoin(w, w.c.batch_id == b.c.id))
        .where(b.c.as_of_date == as_of, b.c.policy_hash == policy_hash)
        .group_by(
            b.c.id,
            b.c.batch_key,
            b.c.entity_code,
            b.c.currency,
            b.c.tier,
            b.c.status,
            b.c.item_count,
            b.c.total_amount,
            b.c.batch_hash,
            w.c.reason_code,
        )
        .order_by(b.c.batch_key, w.c.reason_code)
    ).all()
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(
            r[0],
            {
                "batch_id": r[0],
                "batch_key": r[1],
                "entity": r[2],
                "currency": r[3],
                "tier": r[4],
                "status": r[5],
                "count": int(r[6]),
                "total": money_str(Decimal(str(r[7])).quantize(_Q4)),
                "batch_hash": r[8],
                "by_reason": {},
            },
        )
        if r[9] is not None:
            entry["by_reason"][r[9]] = {"count": int(r[10]), "total": money_str(Decimal(str(r[11])).quantize(_Q4))}
    return list(out.values())


def render_batch_table(batches: list[dict[str, Any]]) -> str:
    if not batches:
        return "no batches"
    lines = [f"{'batch':<52} {'status':<10} {'count':>7} {'total':>18}  by reason"]
    for bt in batches:
        reasons = ", ".join(f"{k} {v['count']} / {v['total']}" for k, v in bt["by_reason"].items())
        lines.append(f"{bt['batch_key']:<52} {bt['status']:<10} {bt['count']:>7} {bt['total']:>18}  {reasons}")
    return "\n".join(lines)
