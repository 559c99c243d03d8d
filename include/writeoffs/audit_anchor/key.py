"""The audit key: parsed from hex, read from the environment or its file, generated once."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from writeoffs.errors import WriteoffError
from writeoffs.private_files import write_private

KEY_ENV = "WRITEOFFS_AUDIT_KEY"
KEY_FILE_ENV = "WRITEOFFS_AUDIT_KEY_FILE"
MIN_KEY_BYTES = 32


class AuditKeyInvalid(WriteoffError):
    """A configured audit key cannot be used (not hex, too short, or its file is readable by others)."""


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
