"""Merge staged batches into the sub-ledger, set-wise, and keep the GL AR control account tied to it.

One transaction for all batches of the run: customers (with parent links and bankruptcy flags), invoices, holds
derived from the dispute / payment-plan flags, payments with their allocations, and collection activities are
upserted on their natural keys with INSERT ... SELECT / UPDATE ... FROM statements (no Python loop over rows).

Rules that protect the ledger's own state:
- the ledger is authoritative for write-off state: an invoice that is written_off, partially_recovered or recovered
  (:data:`writeoffs.accounting.status.LEDGER_OWNED_STATUSES`) is never updated from a source. Its payments are
  still recorded; cash on what was written off becomes a 'recovery' allocation (booked as recovery income by
  :func:`writeoffs.recoveries_pending.book_pending_recoveries`, never applied to the open balance), see
  :func:`~writeoffs.ingest.merge.payments._merge_allocations` for the split on partly written-off invoices;
- the source's open balance is authoritative for every other invoice (payments are history, not re-applied);
  an open balance of zero makes the invoice ``paid``. That includes a *charged-off* invoice: charge-off is a
  declaration, the receivable is still on the books, so its payments are 'regular' allocations and reduce its
  balance (it stays charged_off until paid). A *reversed* invoice keeps its status too (it is not re-proposed
  until a person clears it or the policy's cooling period ends) unless it is paid;
- GL tie-out: the net change of sub-ledger open AR per entity and currency is posted as one "AR sync" entry
  (Dr/Cr AR control against suspense) through :func:`writeoffs.ledger.post_entries`, keyed per
  (source, as-of, entity, currency, load). PostgreSQL takes a table lock on ``invoices`` for the merge so that
  the before/after totals measure only this merge.
- a first load (or one that is mostly new) on PostgreSQL takes the bulk path of :mod:`writeoffs.db.bulk` for
  every table it writes - customers, invoices (and their movements), holds, payments, allocations, activities - (FK
  triggers off, non-unique indexes rebuilt, every key checked set-wise before the AR sync entry is posted); a daily
  load updates only the rows that changed and inserts the new ones.
- unknown entities: created with :func:`writeoffs.ledger.bootstrap_entity` from ``entities:`` in sources.yaml
  (``unknown_entities: bootstrap``), otherwise the merge is refused with the entity named.

Layout (imports go one way, downward): :mod:`~writeoffs.ingest.merge.common` (the ledger-owned statuses, the logger,
``_sql`` and ``statement``, which run the statements kept in ``sql/*.sql`` beside these modules), then side by side
the per-table merges :mod:`~writeoffs.ingest.merge.customers`,
:mod:`~writeoffs.ingest.merge.invoices`, :mod:`~writeoffs.ingest.merge.holds`, :mod:`~writeoffs.ingest.merge.payments`
(with the allocations), :mod:`~writeoffs.ingest.merge.activities` and :mod:`~writeoffs.ingest.merge.ar_sync` (open AR
before/after, the AR sync entry), and on top :mod:`~writeoffs.ingest.merge.batch` (:func:`merge`, one batch, bulk mode,
unknown entities). Every name callers used from ``writeoffs.ingest.merge`` is re-exported here; the settings
``BULK_MIN_ROWS`` and ``ANALYZE_AFTER_ROWS`` are read in :mod:`~writeoffs.ingest.merge.batch`, so patch them there.
"""

from writeoffs.ingest.merge.batch import ANALYZE_AFTER_ROWS, BULK_MIN_ROWS, StagingLost, merge
from writeoffs.ingest.merge.common import PROTECTED

__all__ = ["ANALYZE_AFTER_ROWS", "BULK_MIN_ROWS", "PROTECTED", "StagingLost", "merge"]
