"""Generate the secrets docker-compose.yaml requires into a git-ignored ``.env`` (mode 0600), once.

``docker compose up`` refuses to start without them (``${VAR:?...}``): there is no shipped default for anyone to
reuse. Run ``python scripts/compose_env.py`` (or ``make compose-env``) before the first ``docker compose up``.
Values already in the file are kept (so a re-run never invalidates tokens, encrypted connections or database
passwords), other lines are left as they are, and only the *names* of the secrets written are printed.

- ``AIRFLOW_JWT_SECRET``: signs API and task tokens; whoever knows it can mint a token for any user.
- ``AIRFLOW_FERNET_KEY``: encrypts connections and variables in Airflow's metadata database.
- ``POSTGRES_PASSWORD``: the ``airflow`` role of the metadata database.
- ``LEDGER_DB_PASSWORD``: the ``ledger`` role that owns the ledger database (deploy/postgres-init); migrations only.
- ``LEDGER_APP_PASSWORD``: the runtime role ``ledger_app`` the DAGs connect as (``python -m writeoffs db-roles``).
- ``WRITEOFFS_AUDIT_KEY``: keys the audit chain's MAC (``writeoffs.audit_anchor``); never stored in the ledger.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

from writeoffs.private_files import make_private, write_private  # noqa: E402

#: name -> generator. Hex/URL-safe alphabets only: the values go into URLs and YAML unescaped.
SECRETS: dict[str, Callable[[], str]] = {
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode("ascii"),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "LEDGER_DB_PASSWORD": lambda: secrets.token_hex(24),
    "LEDGER_APP_PASSWORD": lambda: secrets.token_hex(24),
    "WRITEOFFS_AUDIT_KEY": lambda: secrets.token_hex(32),
}


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a compose env file (comments and blank lines skipped)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def ensure_secrets(path: Path) -> list[str]:
    """Add the missing secrets to ``path``; returns their names."""
    present = read_env(path)
    missing = [name for name in SECRETS if not present.get(name)]
    if not missing:
        make_private(path)
        return []
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += "".join(f"{name}={SECRETS[name]()}\n" for name in missing)
    write_private(path, text)
    return missing


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0]) if args else ROOT / ".env"
    written = ensure_secrets(path)
    if written:
        print(f"{path}: generated {', '.join(written)} (mode 0600; values not shown)")
    else:
        print(f"{path}: every required secret is set")


if __name__ == "__main__":
    main()
