"""What a test needs, decided from its fixtures and parameters (used by ``tests/conftest.py`` at collection).

- :func:`needs_postgres`: the ``postgres`` marker, so ``-m "not postgres"`` runs everything that needs no server.
- :func:`not_unit`: the fixtures that keep a test out of ``tests/unit`` (a ledger, a database, Airflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Fixtures that reach the PostgreSQL server (``make_ledger`` does only when asked for a PostgreSQL ledger).
PG_FIXTURES = frozenset({"pg_admin", "pg_schema", "pg_ledger", "pg_ledger_schemas"})
#: The unit tier (pure functions, in-memory objects) asks for none of these.
NOT_UNIT = frozenset(
    PG_FIXTURES | {"ledger", "make_ledger", "ledger_templates", "airflow_db", "airflow_metadata_template", "ledger_env"}
)
UNIT_DIR = Path(__file__).parent / "unit"


def needs_postgres(fixtures: Iterable[str], params: Mapping[str, Any]) -> bool:
    """A PostgreSQL fixture, or a parameter (``ledger``, ``dialect``) set to ``postgresql``."""
    return bool(PG_FIXTURES & set(fixtures)) or "postgresql" in params.values()


def not_unit(path: Path, fixtures: Iterable[str]) -> set[str]:
    """The fixtures a test under ``tests/unit`` may not ask for but does (empty elsewhere, or when it asks none)."""
    return set(NOT_UNIT & set(fixtures)) if UNIT_DIR in Path(path).parents else set()
