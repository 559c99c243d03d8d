"""The workspace pages as HTML strings: my queue, a batch's items, an invoice's trail, reconciliation, sub-ledger.

Each function takes what the route read (already authorised) and returns the page; every source value is escaped
(:mod:`.render`). Stable element ids and ``data-testid`` attributes for browser tests: ``table#queue``,
``table#items``, ``a.csv-download``, ``a#required-action``, ``form#filters``, ``nav a#nav-*``.

Layout: :mod:`~writeoffs_airflow.workspace.pages.batches` (my queue, a batch's items, an answer's outcome),
:mod:`~writeoffs_airflow.workspace.pages.reports` (trail, reconciliation, KPIs, report files, validation Data Docs)
and :mod:`~writeoffs_airflow.workspace.pages.subledger` (the point-in-time sub-ledger). Every name callers used from
``writeoffs_airflow.workspace.pages`` is re-exported here.
"""

from writeoffs_airflow.workspace.pages.batches import answer_page, batch_page, queue_page
from writeoffs_airflow.workspace.pages.reports import (
    chain_block,
    kpi_page,
    reconciliation_page,
    reports_page,
    trail_page,
    validation_page,
)
from writeoffs_airflow.workspace.pages.subledger import (
    subledger_page,
)

__all__ = [
    "answer_page",
    "batch_page",
    "chain_block",
    "kpi_page",
    "queue_page",
    "reconciliation_page",
    "reports_page",
    "subledger_page",
    "trail_page",
    "validation_page",
]
