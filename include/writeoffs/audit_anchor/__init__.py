"""What anchors the audit chain outside the ledger database: the MAC key, and the checkpoints of the chain head.

**Key.** At least 32 random bytes, written as hex. The domain takes it as a parameter (``make_engine(...,
audit_key=...)``); when none is given it comes from ``WRITEOFFS_AUDIT_KEY_FILE`` (a file readable by its owner only:
a group- or world-readable file is refused) or ``WRITEOFFS_AUDIT_KEY``. In Airflow the glue
(``writeoffs_airflow.ledger``) reads the connection ``writeoff_audit_key`` (its password) from the secrets backend
first. ``make demo`` and ``make up`` generate a random key file (mode 0600) with ``python -m writeoffs audit-key``;
compose takes ``WRITEOFFS_AUDIT_KEY`` from the generated ``.env``. No key: audit appends and verification refuse.

**Checkpoints.** A JSON-lines file per ledger (``WRITEOFFS_AUDIT_CHECKPOINT``, default
``$WRITEOFFS_DATA_DIR/audit-checkpoints/<ledger id>.jsonl``, mode 0600): one line ``{"seq", "mac", "at", "tag"}``
per write batch, ``tag`` being an HMAC of the line under the audit key (a line written without the key is refused).
Lines are only ever appended (``O_APPEND``, one ``write``, ``fsync``), under an exclusive lock.

A checkpoint is taken when a connection that appended audit rows goes back to the pool, i.e. once its transaction
committed or rolled back: the hook reads the *committed* head, walks the rows from the last checkpoint to it with
the key, and appends the new head only if the chain still extends the last checkpoint. A broken chain is never
anchored (the refusal is logged; :func:`verify_anchored`, run by reconciliation, reports the break). Cost: per
transaction that audited, one indexed range read of the rows since the last checkpoint and one appended line.

The file and the database are separate trust domains: keep the checkpoint directory where the database's
administrators cannot write (another volume, host or a write-once store).

Submodules: :mod:`.key` (the audit key), :mod:`.store` (the checkpoint file), :mod:`.hook` (binding an engine and
advancing the checkpoint after each auditing transaction), :mod:`.verify` (verification against the checkpoint and
the chain status a page shows), :mod:`.cli` (the ``audit-key`` and ``audit-verify`` commands).
"""

from __future__ import annotations

from writeoffs.audit_anchor.cli import register
from writeoffs.audit_anchor.hook import AnchorRefused, advance, bind, bound, checkpoint_now
from writeoffs.audit_anchor.key import (
    KEY_ENV,
    KEY_FILE_ENV,
    MIN_KEY_BYTES,
    AuditKeyInvalid,
    ensure_key_file,
    key_from_env,
    parse_key,
)
from writeoffs.audit_anchor.store import (
    CHECKPOINT_ENV,
    CHECKPOINT_OPTION,
    CheckpointInvalid,
    CheckpointStore,
    checkpoint_path,
)
from writeoffs.audit_anchor.verify import LIVE_MAX, ChainStatus, chain_status, verify_anchored

__all__ = [
    "CHECKPOINT_ENV",
    "CHECKPOINT_OPTION",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LIVE_MAX",
    "MIN_KEY_BYTES",
    "AnchorRefused",
    "AuditKeyInvalid",
    "ChainStatus",
    "CheckpointInvalid",
    "CheckpointStore",
    "advance",
    "bind",
    "bound",
    "chain_status",
    "checkpoint_now",
    "checkpoint_path",
    "ensure_key_file",
    "key_from_env",
    "parse_key",
    "register",
    "verify_anchored",
]
