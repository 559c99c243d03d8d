"""Advancing the checkpoint: the pool hook that anchors the committed chain head after each auditing transaction."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from writeoffs import audit
from writeoffs.audit import AuditFinding, Checkpoint
from writeoffs.audit_anchor.store import (
    CHECKPOINT_OPTION,
    CheckpointStore,
    checkpoint_path,
)
from writeoffs.errors import WriteoffError

log = logging.getLogger(__name__)


class AnchorRefused(WriteoffError):
    """The chain in the ledger does not extend the last checkpoint: it is not anchored."""


def advance(dbapi_conn: Any, key: bytes, store: CheckpointStore) -> Checkpoint | None:
    """Checkpoint the committed chain head, read on a raw DBAPI connection (ends its transaction).

    Returns the (new or unchanged) last checkpoint; :class:`AnchorRefused` when the chain does not extend it.
    """
    with store.locked():
        cp = store.last(key)
        start = cp.seq if cp is not None else 1
        cur = dbapi_conn.cursor()
        try:
            # ``start`` is an int we computed: formatting it in keeps one statement for both drivers' paramstyles.
            cur.execute(f"SELECT {', '.join(audit.CHAIN_COLUMNS)} FROM audit_log WHERE id >= {int(start)} ORDER BY id")
            rows = cur.fetchall()
        finally:
            cur.close()
            dbapi_conn.rollback()
        prev, expected = audit.GENESIS, 1
        if cp is not None:
            if not rows or int(rows[0][0]) != cp.seq or not hmac.compare_digest(str(rows[0][-1]), cp.mac):
                raise AnchorRefused(
                    f"audit chain does not extend its checkpoint of {cp.at} (row {cp.seq}): not checkpointed"
                )
            prev, expected, rows = cp.mac, cp.seq + 1, rows[1:]
        newest: tuple[int, str] | None = None
        for item in audit.walk(key, rows, prev=prev, expected_id=expected):
            if isinstance(item, AuditFinding):
                raise AnchorRefused(f"audit chain broken at row {item.row_id}: {item.problem}; not checkpointed")
            newest = item
        if newest is None:
            return cp
        new = Checkpoint(seq=newest[0], mac=newest[1], at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        store.record(key, new)
        return new


def checkpoint_now(engine: Engine) -> Checkpoint | None:
    """Checkpoint ``engine``'s ledger now (the hook does this after each auditing transaction)."""
    key, store = bound(engine)
    raw = engine.raw_connection()
    try:
        return advance(raw, key, store)
    finally:
        raw.close()


def bind(engine: Engine, *, key: bytes | None, checkpoint: Path | None) -> Engine:
    """Give ``engine`` its audit key and checkpoint file, and checkpoint after every transaction that audited."""
    options: dict[str, object] = {}
    if key is not None:
        options[audit.KEY_OPTION] = key
    if checkpoint is not None:
        options[CHECKPOINT_OPTION] = str(checkpoint)
    if options:
        engine.update_execution_options(**options)
    if key is None or checkpoint is None:
        return engine
    store = CheckpointStore(checkpoint)

    def on_checkin(dbapi_conn: Any, record: Any) -> None:
        if dbapi_conn is None or not record.info.pop(audit.APPENDED_FLAG, False):
            return
        try:
            advance(dbapi_conn, key, store)
        except Exception as exc:  # never break the pool; the unanchored chain is reported by verification
            log.error("audit checkpoint not advanced (%s): %s", store.path, (str(exc) or repr(exc)).splitlines()[0])

    event.listen(engine, "checkin", on_checkin)
    return engine


def bound(engine: Engine) -> tuple[bytes, CheckpointStore]:
    """The key and checkpoint store bound to ``engine`` (:class:`AuditKeyMissing` without a key)."""
    options = engine.get_execution_options()
    key = audit.require_key(options.get(audit.KEY_OPTION))
    path = options.get(CHECKPOINT_OPTION)
    return key, CheckpointStore(Path(path) if path else checkpoint_path(engine.url))
