"""Group candidates into approval batches: one per (as-of date, entity, currency, tier, policy).

``batch_key = f"{as_of}:{entity}:{currency}:{tier}:{policy_hash[:12]}"`` is unique, so re-running the same date
with the same policy finds the same batches. ``batch_hash`` is sha256 over the batch's items as the approver sees
them (see :func:`items_digest`); approval and posting recompute it with :func:`batch_items_hash` to prove the batch
was not changed after approval.

A batch that has left ``proposed`` (being approved, approved, posted, ...) is never changed: a candidate that would
join it (new data on a re-run of the same date) is written ``skipped`` instead, with the reason; the next as-of
date selects the invoice again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Connection, String, and_, delete, exists, func, select, text, update

from writeoffs.db import dialect
from writeoffs.db.schema import invoices, writeoff_batches, writeoffs
from writeoffs.ledger import upsert_ignore
from writeoffs.money import money_str
from writeoffs.policy.schema import Policy
from writeoffs.policy.selection import LIVE_STATUSES
from writeoffs.policy.sqlx import rows_table
from writeoffs.tiers import AUTO_TIER

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
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "skipped": self.skipped}


_MAP_COLUMNS = (
    ("entity_code", String(16)),
    ("currency", String(3)),
    ("tier", String(24)),
    ("batch_id", BigInteger()),
    ("is_open", Boolean()),
)


def open_batches(
    conn: Connection,
    policy: Policy,
    as_of: date,
    *,
    prepared_by: str = "system",
    dag_run_id: str | None = None,
) -> Any:
    """Ensure a batch exists for every (entity, currency, tier) that could receive candidates; return the map.

    The combinations are few (entities x currencies x tiers), so creating them up front lets the candidate INSERT
    attach each row to its batch directly; :func:`finish_batches` drops the ones that stayed empty.
    """
    b = writeoff_batches
    pairs = conn.execute(
        select(invoices.c.entity_code, invoices.c.currency).where(invoices.c.status.in_(LIVE_STATUSES)).distinct()
    ).all()
    tiers = [AUTO_TIER, *(t.name for t in policy.tiers)]
    rows = [
        {
            "batch_key": batch_key(as_of, e, cur, t, policy.content_hash),
            "entity_code": e,
            "currency": cur,
            "tier": t,
            "as_of_date": as_of,
            "policy_version": policy.version,
            "policy_hash": policy.content_hash,
            "status": "proposed",
            "prepared_by": prepared_by,
            "dag_run_id": dag_run_id,
        }
        for e, cur in sorted(pairs)
        for t in tiers
    ]
    upsert_ignore(conn, b, rows, ["batch_key"])
    existing = conn.execute(
        select(b.c.entity_code, b.c.currency, b.c.tier, b.c.id, b.c.status).where(
            b.c.as_of_date == as_of, b.c.policy_hash == policy.content_hash
        )
    ).all()
    return rows_table(
        "batch_map", _MAP_COLUMNS, [(e, cur, t, bid, st == "proposed") for e, cur, t, bid, st in existing]
    )


def finish_batches(conn: Connection, policy: Policy, as_of: date) -> BatchingResult:
    """Drop empty proposed batches, then set count, total and hash of the proposed ones (set-wise)."""
    w, b = writeoffs, writeoff_batches
    mine = and_(b.c.as_of_date == as_of, b.c.policy_hash == policy.content_hash, b.c.status == "proposed")
    conn.execute(delete(b).where(mine, ~exists().where(w.c.batch_id == b.c.id)))
    ids = [r.id for r in conn.execute(select(b.c.id).where(mine))]
    if ids:
        count_q = select(func.count()).where(w.c.batch_id == b.c.id).scalar_subquery()
        total_q = select(func.coalesce(func.sum(w.c.amount), 0)).where(w.c.batch_id == b.c.id).scalar_subquery()
        conn.execute(update(b).where(b.c.id.in_(ids)).values(item_count=count_q, total_amount=total_q))
        if dialect.of(conn).sha256:
            _hash_batches_pg(conn, ids)
        else:
            _hash_batches_python(conn, ids)
    skipped = conn.execute(
        select(func.count()).where(
            w.c.as_of_date == as_of, w.c.policy_hash == policy.content_hash, w.c.status == "skipped"
        )
    ).scalar_one()
    return BatchingResult(len(ids), int(skipped))


def batch_table(conn: Connection, policy_hash: str, as_of: date) -> list[dict[str, Any]]:
    """Per-batch summary (count, total, by reason) for logs and XCom; money as strings."""
    b, w = writeoff_batches, writeoffs
    # What a row is grouped by, selected in this order (the row indexes below depend on it).
    keys = (
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
    rows = conn.execute(
        select(*keys, func.count(w.c.id), func.sum(w.c.amount))
        .select_from(b.outerjoin(w, w.c.batch_id == b.c.id))
        .where(b.c.as_of_date == as_of, b.c.policy_hash == policy_hash)
        .group_by(*keys)
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
