"""``python -m writeoffs audit-key`` and ``audit-verify``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from writeoffs.audit_anchor.key import (
    KEY_FILE_ENV,
    AuditKeyInvalid,
    ensure_key_file,
)
from writeoffs.audit_anchor.verify import (
    verify_anchored,
)


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
