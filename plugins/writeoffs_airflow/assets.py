"""Assets that chain the pipeline's DAGs (data-aware scheduling): each DAG updates one, the next is scheduled on it.

ar_aging_ingest --(AGING)--> writeoff_candidates --(CANDIDATES)--> writeoff_approval --(POSTING)-->
ledger_reconciliation
"""

from __future__ import annotations

from airflow.sdk import Asset

AGING = Asset(name="ar_aging_snapshot", uri="writeoffs://ledger/aging_snapshots")
CANDIDATES = Asset(name="writeoff_candidates", uri="writeoffs://ledger/writeoff_batches")
POSTING = Asset(name="writeoff_postings", uri="writeoffs://ledger/journal_entries")
