"""The checkpoint store: an append-only JSON-lines file of chain heads, each line tagged with the key."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from writeoffs.audit import Checkpoint
from writeoffs.errors import WriteoffError
from writeoffs.private_files import PRIVATE_MODE

CHECKPOINT_ENV = "WRITEOFFS_AUDIT_CHECKPOINT"
#: Engine execution option naming the checkpoint file of the engine's ledger.
CHECKPOINT_OPTION = "writeoffs_audit_checkpoint"


class CheckpointInvalid(WriteoffError):
    """The checkpoint file's newest line is unreadable or was not written with the audit key."""


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
