"""The import contracts in pyproject.toml ([tool.importlinter]) hold: the domain never imports Airflow or the
Airflow glue, storage/money/errors import no pipeline stage, and reconciliation imports only downward.

Run by the suite so that CI enforces them; ``lint-imports`` (import-linter, pinned) is the tool. Breaking one - e.g.
``import airflow`` in a module under include/writeoffs - fails this test with import-linter's explanation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_hold() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout, result.stdout[-2000:]
