"""Ingestion of AR aging data from source systems: connectors, staging with lineage, merge, aging.

Flow per business date: ``stage`` each configured source (one transaction per (source, as-of) batch) →
[validation, another feature] → ``merge`` the batches into the sub-ledger (+ AR sync journal entries) →
``writeoffs.aging.compute_aging``. :func:`writeoffs.ingest.pipeline.run` chains them outside Airflow.
"""

from __future__ import annotations
