"""Issue 14: the demo's secret files are readable by their owner only, and no launcher prints a password.

Files: the SimpleAuthManager passwords of `make up` / compose (``scripts/demo_users.py``), those of the private
Airflow that `make demo` and the HITL tests start (``scripts/airflow_local.py``), and the compose ``.env`` of
generated secrets (``scripts/compose_env.py``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from scripts import airflow_local, compose_env, demo_users

USERS = "admin:admin,preparer:user,controller:user"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def users_env(monkeypatch, tmp_path) -> Path:
    path = tmp_path / "config" / "passwords.json"
    monkeypatch.setenv(demo_users.USERS_VAR, USERS)
    monkeypatch.setenv(demo_users.FILE_VAR, str(path))
    monkeypatch.delenv("WRITEOFFS_DEMO_PASSWORD", raising=False)
    return path


def test_demo_passwords_file_is_written_0600(users_env: Path):
    os.umask(0o022)  # a usual umask: without care, a new file would be 0644
    demo_users.ensure_passwords(users_env)
    assert mode(users_env) == 0o600
    assert json.loads(users_env.read_text()) == {"admin": "admin", "preparer": "preparer", "controller": "controller"}


def test_a_world_readable_passwords_file_is_tightened_even_when_unchanged(users_env: Path):
    users_env.parent.mkdir(parents=True)
    users_env.write_text(json.dumps({"admin": "s3cret", "preparer": "p", "controller": "c"}))
    users_env.chmod(0o644)
    demo_users.ensure_passwords(users_env)
    assert mode(users_env) == 0o600
    assert json.loads(users_env.read_text())["admin"] == "s3cret"  # never overwritten


def test_banner_prints_no_password(users_env: Path, capsys, monkeypatch):
    monkeypatch.setenv("WRITEOFFS_DEMO_PASSWORD", "Tr0ub4dor-and-3")
    monkeypatch.setattr("sys.argv", ["demo_users.py", "--print-url", "http://localhost:8080"])
    demo_users.main()
    out = capsys.readouterr().out
    assert "http://localhost:8080" in out and "controller" in out and str(users_env) in out
    assert "Tr0ub4dor-and-3" not in out


def test_private_airflow_passwords_file_is_0600(tmp_path: Path):
    os.umask(0o022)
    passwords = airflow_local.write_passwords(tmp_path, {"admin": "admin", "controller": "user"})
    path = tmp_path / "passwords.json"
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == passwords
    assert len(set(passwords.values())) == 2 and all(len(p) >= 16 for p in passwords.values())


def test_compose_env_generates_random_secrets_0600_and_keeps_existing(tmp_path: Path, capsys):
    os.umask(0o022)
    env = tmp_path / ".env"
    env.write_text("# mine\nAIRFLOW_EXECUTOR=CeleryExecutor\nPOSTGRES_PASSWORD=kept-as-is\n")
    env.chmod(0o644)
    compose_env.main([str(env)])
    first = compose_env.read_env(env)
    assert mode(env) == 0o600
    assert first["AIRFLOW_EXECUTOR"] == "CeleryExecutor" and first["POSTGRES_PASSWORD"] == "kept-as-is"
    assert set(compose_env.SECRETS) <= set(first)
    out = capsys.readouterr().out
    for name in compose_env.SECRETS:
        if name != "POSTGRES_PASSWORD":
            assert first[name] not in out, f"{name} printed"
    compose_env.main([str(env)])  # a second run changes nothing
    assert compose_env.read_env(env) == first
    other = tmp_path / "other.env"
    compose_env.main([str(other)])
    second = compose_env.read_env(other)
    for name in compose_env.SECRETS:
        if name != "POSTGRES_PASSWORD":
            assert second[name] != first[name] and len(second[name]) >= 32, name
