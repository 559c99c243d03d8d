"""What Airflow's plugins manager imports from ``plugins/``: the workspace plugin, and nothing else.

Airflow imports every ``.py`` file under the plugins folder, in every component, as a top-level module named after
the file. Without ``plugins/.airflowignore`` that was a second copy of each of our modules under names such as
``storage``, ``ledger`` and ``connections`` (and Flask-AppBuilder through ``fab_auth``) in the scheduler, the
workers, the dag-processor and the api-server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"

SCAN = """
import json, sys
from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory
before = set(sys.modules)
plugins, errors = _load_plugins_from_plugin_directory(sys.argv[1], ignore_file_syntax="glob")
print(json.dumps({"plugins": [p.name for p in plugins], "errors": errors,
                  "new_top_level": sorted(m for m in set(sys.modules) - before if "." not in m)}))
"""


def test_only_the_workspace_plugin_is_imported_from_the_plugins_folder() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(PLUGINS)])}
    done = subprocess.run(
        [sys.executable, "-c", SCAN, str(PLUGINS)], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["plugins"] == ["writeoffs_workspace"] and found["errors"] == {}
    ours = {p.stem for p in (PLUGINS / "writeoffs_airflow").rglob("*.py")} - {"__init__"}
    assert set(found["new_top_level"]) & ours == {"workspace_plugin"}
