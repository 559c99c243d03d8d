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
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url

from writeoffs import audit
from writeoffs.audit import AuditFinding, Checkpoint
from writeoffs.errors import WriteoffError
from writeoffs.private_files import PRIVATE_MODE, write_private

log = logging.getLogger(__name__)

KEY_ENV = "WRITEOFFS_AUDIT_KEY"
KEY_FILE_ENV = "WRITEOFFS_AUDIT_KEY_FILE"
CHECKPOINT_ENV = "WRITEOFFS_AUDIT_CHECKPOINT"
#: Engine execution option naming the checkpoint file of the engine's ledger.
CHECKPOINT_OPTION = "writeoffs_audit_checkpoint"
MIN_KEY_BYTES = 32


class AuditKeyInvalid(WriteoffError):
    """A configured audit key cannot be used (not hex, too short, or its file is readable by others)."""


class CheckpointInvalid(WriteoffError):
    """The checkpoint file's newest line is unreadable or was not written with the audit key."""


class AnchorRefused(WriteoffError):
    """The chain in the ledger does not extend the last checkpoint: it is not anchored."""


# --- the key ------------------------------------------------------------------------------------------------------


def parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise AuditKeyInvalid(f"audit key from {source} is not hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyInvalid(f"audit key from {source} has {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


def key_from_env() -> bytes | None:
    """The key from ``WRITEOFFS_AUDIT_KEY_FILE`` or ``WRITEOFFS_AUDIT_KEY``; None when neither is set."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        file = Path(path)
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except OSError as exc:
            raise AuditKeyInvalid(f"audit key file {file} cannot be read: {exc.strerror}") from None
        if mode & 0o077:
            raise AuditKeyInvalid(f"audit key file {file} is readable by others (mode {mode:04o}): chmod 600 it")
        return parse_key(file.read_text(encoding="ascii"), str(file))
    value = os.environ.get(KEY_ENV)
    return parse_key(value, KEY_ENV) if value else None


def ensure_key_file(path: Path) -> bool:
    """Write a new random key to ``path`` (mode 0600) unless the file exists; True when one was written."""
    if path.exists():
        return False
    write_private(path, secrets.token_hex(MIN_KEY_BYTES) + "\n")
    return True


# --- the checkpoint store -----------------------------------------------------------------------------------------


def checkpoint_path(url: object) -> Path:
    """``WRITEOFFS_AUDIT_CHECKPOINT``, else one file per ledger URL under ``$WRITEOFFS_DATA_DIR``."""
    explicit = os.environ.get(CHECKPOINT_ENV)
    if explicit:
        return Path(explicit)
    # The ledger, not who connects to it: the owner and the runtime role share one checkpoint file.
    full = url if isinstance(url, URL) else make_url(str(url))
    shown = full.set(username=None, password=None).render_as_string(hide_password=True)
    ledger_id = hashlib.sha256(shown.encode("utf-8")).hexdigest()[:16]
    base = Path(os.environ.get("WRITEOFFS_DATA_DIR", ".data")).resolve()
    return base / "audit-checkpoints" / f"{ledger_id}.jsonl"


def _tag(key: bytes, seq: int, mac: str, at: str) -> str:
    payload = "\x1f".join(["writeoffs-audit-checkpoint", str(seq), mac, at])
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock (a sibling ``.lock`` file) across threads and processes of this host."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def last(self, key: bytes) -> Checkpoint | None:
        """The newest checkpoint, its tag checked; None when nothing was ever checkpointed."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        lines = raw.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            return None
        try:
            rec = json.loads(lines[-1])
            cp = Checkpoint(seq=int(rec["seq"]), mac=str(rec["mac"]), at=str(rec["at"]))
            tag = str(rec["tag"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointInvalid(f"audit checkpoint file {self.path}: the newest line is unreadable") from None
        if not hmac.compare_digest(tag, _tag(key, cp.seq, cp.mac, cp.at)):
            raise CheckpointInvalid(
                f"audit checkpoint file {self.path}: the newest line was not written with the audit key (forged?)"
            )
        return cp

    def record(self, key: bytes, cp: Checkpoint) -> None:
        line = json.dumps({"seq": cp.seq, "mac": cp.mac, "at": cp.at, "tag": _tag(key, cp.seq, cp.mac, cp.at)})
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        try:
            os.fchmod(fd, PRIVATE_MODE)
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


# --- advancing the checkpoint ---------------------------------------------------------------------------------------


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


# --- verification against the checkpoint ----------------------------------------------------------------------------


def verify_anchored(engine: Engine) -> list[AuditFinding]:
    """Verify the whole chain with the key and against the last checkpoint; findings (empty: intact and anchored).

    The checkpoint is read before the database, so every row it names was committed before the read: a posting
    committing meanwhile cannot make the head look truncated. No checkpoint while the ledger has audit rows is a
    finding (fail closed), and so is a checkpoint line not written with the key.
    """
    key, store = bound(engine)
    findings: list[AuditFinding] = []
    cp: Checkpoint | None = None
    try:
        cp = store.last(key)
    except CheckpointInvalid as exc:
        findings.append(AuditFinding(0, str(exc)))
    with engine.connect() as conn:
        findings.extend(audit.verify(conn, key=key, checkpoint=cp))
        rows = audit.count(conn)
    if cp is None and rows and not findings:
        findings.append(
            AuditFinding(0, f"no checkpoint of the audit chain at {store.path}: {rows} audit row(s) are not anchored")
        )
    return findings


# --- reconciliation ---------------------------------------------------------------------------------------------


def check_audit_chain(conn: Any, as_of: Any, tolerance: Any) -> list[Any]:
    """The audit chain verifies with the key and reaches the last checkpoint kept outside the ledger.

    Reads on its own connection, after reading the checkpoint (``writeoffs.audit_anchor.verify_anchored``): a
    posting that commits during the run must not look like a truncated tail. No checkpoint while the ledger has
    audit rows, or no key, is a break (fail closed), never a skip.
    """
    from writeoffs.reconcile import MAX_DOCUMENTS, Break

    findings = verify_anchored(conn.engine)
    if not findings:
        return []
    first = findings[0]
    return [
        Break(
            check="audit_chain",
            message=f"audit chain broken or not anchored: row {first.row_id}: {first.problem}"
            + (f" (+{len(findings) - 1} more finding(s))" if len(findings) > 1 else ""),
            documents=tuple({"row_id": f.row_id, "problem": f.problem} for f in findings[:MAX_DOCUMENTS]),
        )
    ]


# --- CLI ------------------------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """``python -m writeoffs audit-key`` (create the key file) and ``audit-verify`` (exit 1 on findings)."""
    p = subparsers.add_parser("audit-key", help=f"create a random audit key file (mode 0600) at ${KEY_FILE_ENV}")
    p.add_argument("--file", type=Path, default=None, help=f"default: ${KEY_FILE_ENV}")
    p.set_defaults(func=_cmd_key)
    v = subparsers.add_parser("audit-verify", help="verify the audit chain with the key and against its checkpoint")
    v.set_defaults(func=_cmd_verify)


def _cmd_key(args: argparse.Namespace) -> int:
    path = args.file or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
    if path is None:
        raise AuditKeyInvalid(f"audit-key: give --file or set {KEY_FILE_ENV}")
    print(f"{path}: {'generated a new audit key (mode 0600)' if ensure_key_file(path) else 'exists, kept'}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import open_ledger

    findings = verify_anchored(open_ledger(args.ledger_url))
    for f in findings:
        print(f"row {f.row_id}: {f.problem}")
    print("audit chain intact and anchored" if not findings else f"audit chain BROKEN: {len(findings)} finding(s)")
    return 1 if findings else 0
