"""The controls on the test tiers (``tests/tiers.py``): a database test cannot hide in ``tests/unit``, and every
test that reaches PostgreSQL through a fixture or parameter is marked ``postgres``."""

from __future__ import annotations

from tests.tiers import UNIT_DIR, needs_postgres, not_unit


def test_a_ledger_test_in_the_unit_tier_is_named() -> None:
    assert not_unit(UNIT_DIR / "test_x.py", ["tmp_path", "ledger"]) == {"ledger"}
    assert not_unit(UNIT_DIR / "sub" / "test_x.py", ["pg_admin", "airflow_db"]) == {"pg_admin", "airflow_db"}
    assert not_unit(UNIT_DIR / "test_x.py", ["tmp_path", "monkeypatch"]) == set()
    assert not_unit(UNIT_DIR.parent / "integration" / "test_x.py", ["ledger"]) == set()


def test_postgres_is_marked_by_fixture_or_parameter() -> None:
    assert needs_postgres(["pg_ledger"], {})
    assert needs_postgres(["ledger"], {"ledger": "postgresql"})
    assert needs_postgres(["make_ledger"], {"dialect": "postgresql"})
    assert not needs_postgres(["ledger"], {"ledger": "sqlite"})
    assert not needs_postgres(["make_ledger", "tmp_path"], {})
