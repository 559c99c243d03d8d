"""Validation gates for every ingest batch and the aging snapshot (Great Expectations 1.x + set-wise SQL).

Nothing reaches the merge, candidate selection or the GL unless its data passed: ``blocking`` checks stop the run,
``warning`` checks quarantine the offending rows under the check's name. See docs/validation.md.

Importing this package is cheap (no GX import): DAG files may import it at parse time.
"""

from __future__ import annotations

from writeoffs.validation.checks import CHECKS, Check, Scope, Tables, all_check_names, checks_for
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.config import load as load_config

__all__ = [
    "CHECKS",
    "Check",
    "Scope",
    "Tables",
    "ValidationConfig",
    "all_check_names",
    "checks_for",
    "load_config",
]
