"""Files that hold secrets (demo passwords, generated deployment secrets) are readable by their owner only.

One rule, one home: every launcher that writes a password or a key writes it through :func:`write_private`.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, whatever the umask and whatever mode an existing file had.

    The file is created 0600 (never world-readable, not even between a write and a chmod), and an existing file is
    tightened before anything is written into it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), PRIVATE_MODE)
        handle.write(text)


def make_private(path: Path) -> None:
    """Tighten an existing secret file to 0600 (one written by an older version, or by hand)."""
    path.chmod(PRIVATE_MODE)
