"""AR write-off domain package.

Importable and testable without Airflow: DAGs in ``dags/`` are thin wrappers that call into this package.
"""

from __future__ import annotations

__version__ = "0.1.0"
