"""Append-only, hash-chained audit log.

Each row stores ``row_hash = sha256(prev_hash | id | recorded_at | actor | action | object_type | object_id |
details)``; ``prev_hash`` is the previous row's hash (``GENESIS`` for the first). Editing a row breaks its own hash,
deleting one breaks the link of the next, inserting one out of band breaks both. Triggers refuse UPDATE/DELETE
on both databases (migration 0002); :func:`verify` proves nobody got around them (e.g. a superuser disabling
triggers, or someone editing the SQLite file).

Appends are serialised (PostgreSQL advisory lock; SQLite serialises writers anyway) so the chain never forks.
Set-wise work writes one audit row per operation with counts and a digest of the rows it touched, not one per
invoice: that keeps a 1M-invoice run auditable without a 1M-row audit write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select, text

from writeoffs.db.schema import audit_log

GENESIS = "0" * 64
_LOCK_KEY = 7_311_001  # advisory lock id for audit appends (PostgreSQL)


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[no-any-return]
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"cannot audit {type(value).__name__}")


def canonical_json(details: object) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=_default, ensure_ascii=False)


def row_hash(
    prev_hash: str,
    row_id: int,
    recorded_at: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | None,
    details: str,
) -> str:
    payload = "\x1f".join([prev_hash, str(row_id), recorded_at, actor, action, object_type, object_id or "", details])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None = None,
    details: object = None,
    now: datetime | None = None,
) -> str:
    """Append one audit row inside the caller's transaction; returns its hash."""
    if conn.dialect.name == "postgresql":
        # One lock per ledger (schema), not per server: ledgers in other schemas of the same database must not wait.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:k AS integer), hashtext(current_schema()))"),
            {"k": _LOCK_KEY},
        )
    last = conn.execute(select(audit_log.c.id, audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).first()
    prev = last.row_hash if last else GENESIS
    # The id is part of the hash, so we choose it (max + 1) under the lock instead of letting the DB assign it.
    new_id = (last.id if last else 0) + 1
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    oid = None if object_id is None else str(object_id)
    body = canonical_json(details if details is not None else {})
    digest = row_hash(prev, new_id, stamp, actor, action, object_type, oid, body)
    conn.execute(
        insert(audit_log).values(
            id=new_id,
            recorded_at=stamp,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=oid,
            details=body,
            prev_hash=prev,
            row_hash=digest,
        )
    )
    return digest


@dataclass(frozen=True, slots=True)
class AuditFinding:
    row_id: int
    problem: str


def verify(conn: Connection, *, expected_head: str | None = None) -> list[AuditFinding]:
    """Recompute the chain; returns findings (empty list: intact).

    ``expected_head`` (a hash recorded elsewhere, e.g. in a report) also detects removal of the newest rows.
    """
    findings: list[AuditFinding] = []
    prev = GENESIS
    expected_id = 1
    last_hash = GENESIS
    rows = conn.execution_options(yield_per=10_000).execute(select(audit_log).order_by(audit_log.c.id))
    for r in rows:
        if r.id != expected_id:
            findings.append(AuditFinding(r.id, f"gap: expected row {expected_id}, found {r.id} (rows deleted?)"))
        if r.prev_hash != prev:
            findings.append(AuditFinding(r.id, "prev_hash does not match the previous row (row removed or inserted)"))
        calc = row_hash(r.prev_hash, r.id, r.recorded_at, r.actor, r.action, r.object_type, r.object_id, r.details)
        if calc != r.row_hash:
            findings.append(AuditFinding(r.id, "row_hash does not match the row's content (row edited)"))
        prev = r.row_hash
        last_hash = r.row_hash
        expected_id = r.id + 1
    if expected_head is not None and expected_head != last_hash:
        findings.append(AuditFinding(expected_id - 1, "chain head differs from the expected head (tail removed?)"))
    return findings


def head(conn: Connection) -> str:
    last = conn.execute(select(audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()
    return last or GENESIS


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
