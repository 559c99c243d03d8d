"""Deterministic demo logins for Airflow's SimpleAuthManager (`make up` and docker compose).

SimpleAuthManager reads users from ``[core] simple_auth_manager_users`` (``name:role,...``) and passwords from the
JSON file ``[core] simple_auth_manager_passwords_file``; users missing from the file get a random password that is
only printed once. Writing the file first makes the logins known: password = user name unless
``WRITEOFFS_DEMO_PASSWORD`` is set. Existing entries are never overwritten, so a changed password survives restarts.
The file is mode 0600 (an existing one is tightened) and the banner names users, roles and the file, never a password.

Demo only: SimpleAuthManager keeps passwords in plain text. Use a real auth manager in production (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from writeoffs.private_files import make_private, write_private

USERS_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
FILE_VAR = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


def users() -> dict[str, str]:
    """user -> role, in configuration order."""
    pairs = [u.strip().split(":") for u in os.environ[USERS_VAR].split(",") if u.strip()]
    return {p[0]: p[1] for p in pairs}


def ensure_passwords(path: Path) -> dict[str, str]:
    current = json.loads(path.read_text() or "{}") if path.exists() else {}
    default = os.environ.get("WRITEOFFS_DEMO_PASSWORD")
    merged = {**{u: default or u for u in users()}, **current}
    if merged != current:
        write_private(path, json.dumps(merged, indent=1) + "\n")
    else:
        make_private(path)
    return merged


def banner(path: Path, url: str) -> str:
    """Who can log in, never with what: logs (compose's init log above all) are read by more people than the file."""
    lines = ["=" * 72, f"Airflow UI:  {url}    (API: {url}/api/v2)", "Logins (user, Airflow role):"]
    lines += [f"  {u:12} role {r}" for u, r in users().items()]
    lines.append(f"Passwords: in {path} (mode 0600; demo default = the user name unless WRITEOFFS_DEMO_PASSWORD)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print-url", help="print the login banner for this UI URL")
    args = parser.parse_args()
    path = Path(os.environ[FILE_VAR])
    ensure_passwords(path)
    if args.print_url:
        print(banner(path, args.print_url), flush=True)


if __name__ == "__main__":
    main()
