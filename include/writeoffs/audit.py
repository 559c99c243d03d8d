"""Append-only audit log, chained with a keyed MAC and anchored outside the ledger database.

Each row stores ``row_hash = HMAC-SHA256(key, prev_hash | id | recorded_at | actor | action | object_type |
object_id | details)``; ``prev_hash`` is the previous row's MAC (``GENESIS`` for the first). The key never lives in
the ledger database (``writeoffs.audit_anchor``: a key file, an environment variable or an Airflow connection), so
somebody who can write to the database but does not hold the key cannot produce a row, nor recompute the chain
after editing, deleting or renumbering rows. Editing a row breaks its own MAC, deleting one breaks the link of the
next, inserting one out of band breaks both. Triggers refuse UPDATE/DELETE on both databases (migration 0002);
:func:`verify` proves nobody got around them (a superuser disabling triggers, someone editing the SQLite file).

What a chain alone cannot show is its newest rows being cut off: the remaining prefix is a valid chain. After
each write batch the chain head (sequence number + MAC) is checkpointed outside the ledger
(``writeoffs.audit_anchor``), and :func:`verify` given that checkpoint reports a head below it or a rewritten row.

Fail closed: without a key, :func:`append` and :func:`verify` refuse with :class:`AuditKeyMissing`.

Appends are serialised (PostgreSQL advisory lock; SQLite serialises writers anyway) so the chain never forks.
Set-wise work writes one audit row per operation with counts and a digest of the rows it touched, not one per
invoice: that keeps a 1M-invoice run auditable without a 1M-row audit write.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Connection, func, insert, select

from writeoffs.db.locks import AUDIT_APPEND, ledger_lock
from writeoffs.db.schema import audit_log
from writeoffs.errors import WriteoffError

GENESIS = "0" * 64
#: Engine/connection execution option carrying the audit key (bytes); set by ``writeoffs.audit_anchor.bind``.
KEY_OPTION = "writeoffs_audit_key"
#: ``Connection.info`` flag: this DBAPI connection appended audit rows (the checkpoint hook looks for it).
APPENDED_FLAG = "writeoffs.audit.appended"
#: The columns a MAC covers, in MAC order (after ``prev_hash``), then ``row_hash``.
CHAIN_COLUMNS = ("id", "recorded_at", "actor", "action", "object_type", "object_id", "details", "prev_hash", "row_hash")


class AuditKeyMissing(WriteoffError):
    """No audit key is configured: audit rows can neither be written nor verified."""


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


def require_key(found: object) -> bytes:
    """``found`` as the key; :class:`AuditKeyMissing` (one line, saying where a key is configured) when empty."""
    if not found:
        raise AuditKeyMissing(
            "audit: no audit key configured: set WRITEOFFS_AUDIT_KEY_FILE (or the Airflow connection"
            " writeoff_audit_key); audit rows are neither written nor verified without it"
        )
    return bytes(found)  # type: ignore[arg-type]


def audit_key(conn: Connection, key: bytes | None = None) -> bytes:
    """``key``, else the key bound to the connection's engine (``writeoffs.audit_anchor.bind``)."""
    return require_key(key or conn.get_execution_options().get(KEY_OPTION))


def row_mac(
    key: bytes,
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
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


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
    """Append one audit row inside the caller's transaction; returns its MAC."""
    key = audit_key(conn)
    ledger_lock(conn, AUDIT_APPEND)
    last = conn.execute(select(audit_log.c.id, audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).first()
    prev = last.row_hash if last else GENESIS
    # The id is part of the MAC, so we choose it (max + 1) under the lock instead of letting the DB assign it.
    new_id = (last.id if last else 0) + 1
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    oid = None if object_id is None else str(object_id)
    body = canonical_json(details if details is not None else {})
    digest = row_mac(key, prev, new_id, stamp, actor, action, object_type, oid, body)
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
    # Read by the checkpoint hook when the connection goes back to the pool (after commit or rollback).
    conn.info[APPENDED_FLAG] = True
    return digest


@dataclass(frozen=True, slots=True)
class AuditFinding:
    row_id: int
    problem: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A chain head recorded outside the ledger: row ``seq`` had MAC ``mac`` at ``at`` (UTC, ISO-8601)."""

    seq: int
    mac: str
    at: str


def walk(
    key: bytes, rows: Iterable[Sequence[object]], *, prev: str = GENESIS, expected_id: int = 1
) -> Iterator[AuditFinding | tuple[int, str]]:
    """Check consecutive rows (tuples in :data:`CHAIN_COLUMNS` order), starting after a row with MAC ``prev``.

    Yields a finding per problem and, after each row, ``(id, row_hash)``: the caller keeps the last as the head.
    One home for the chain rule: :func:`verify` and the checkpoint hook both walk rows through here.
    """
    for r in rows:
        row_id, recorded_at, actor, action, object_type, object_id, details, prev_hash, row_hash = r
        row_id = int(row_id)  # type: ignore[call-overload]
        if row_id != expected_id:
            yield AuditFinding(row_id, f"gap: expected row {expected_id}, found {row_id} (rows deleted or renumbered?)")
        if prev_hash != prev:
            yield AuditFinding(row_id, "prev_hash does not match the previous row (row removed or inserted)")
        oid = None if object_id is None else str(object_id)
        calc = row_mac(
            key, str(prev_hash), row_id, str(recorded_at), str(actor), str(action), str(object_type), oid, str(details)
        )
        if not hmac.compare_digest(calc, str(row_hash)):
            yield AuditFinding(row_id, "row MAC does not match the row's content (edited, or written without the key)")
        prev = str(row_hash)
        expected_id = row_id + 1
        yield (row_id, prev)


def verify(conn: Connection, *, key: bytes | None = None, checkpoint: Checkpoint | None = None) -> list[AuditFinding]:
    """Recompute the chain with the key; returns findings (empty list: intact).

    ``checkpoint`` (the last head recorded outside the ledger, ``writeoffs.audit_anchor``) also detects the newest
    rows removed (the head is below the checkpoint) and a chain rewritten up to or past it (the row it names no
    longer carries its MAC).
    """
    key = audit_key(conn, key)
    findings: list[AuditFinding] = []
    head_id, head_mac = 0, GENESIS
    at_checkpoint: str | None = None
    cols = [audit_log.c[name] for name in CHAIN_COLUMNS]
    rows = conn.execution_options(yield_per=10_000).execute(select(*cols).order_by(audit_log.c.id))
    for item in walk(key, rows):
        if isinstance(item, AuditFinding):
            findings.append(item)
            continue
        head_id, head_mac = item
        if checkpoint is not None and head_id == checkpoint.seq:
            at_checkpoint = head_mac
    if checkpoint is not None:
        findings.extend(check_against(checkpoint, head_id, at_checkpoint))
    return findings


def check_against(checkpoint: Checkpoint, head_id: int, mac_at_seq: str | None) -> list[AuditFinding]:
    """Findings of a chain whose newest row is ``head_id`` and whose row ``checkpoint.seq`` has ``mac_at_seq``."""
    if head_id < checkpoint.seq:
        return [
            AuditFinding(
                head_id,
                f"tail truncated: the newest audit row is {head_id}, the checkpoint of {checkpoint.at}"
                f" anchors row {checkpoint.seq}",
            )
        ]
    if mac_at_seq is None or not hmac.compare_digest(mac_at_seq, checkpoint.mac):
        return [
            AuditFinding(
                checkpoint.seq,
                f"row {checkpoint.seq} differs from the checkpoint of {checkpoint.at} (chain rewritten or renumbered)",
            )
        ]
    return []


def head(conn: Connection) -> str:
    last = conn.execute(select(audit_log.c.row_hash).order_by(audit_log.c.id.desc()).limit(1)).scalar()
    return last or GENESIS


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
