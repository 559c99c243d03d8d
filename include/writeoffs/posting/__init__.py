"""Post an approved write-off batch to the general ledger exactly once.

Entries (one per write-off, linked to the invoice by its lines, to the batch by ``batch_id``, to the approvals via
the batch and the description, to the policy by ``policy_version``):

- direct method:    Dr Bad Debt Expense (account of the reason)   / Cr Accounts Receivable (control)
- allowance method: Dr Allowance for Doubtful Accounts            / Cr Accounts Receivable (control)

in the invoice currency, and in the entity's functional currency at the invoice's booked ``fx_rate``.

Exactly once, by construction rather than by care:

- every write-off has a unique ``idempotency_key`` (``wo:<as_of>:<policy_hash>:<invoice_id>``) and its journal entry
  carries the same key (:func:`writeoffs.accounting.keys.writeoff_entry`, unique in ``journal_entries``), so the
  database refuses a second entry whatever the caller does;
- the batch is posted in chunks, each chunk ONE transaction holding the batch row lock (``SELECT ... FOR UPDATE`` on
  PostgreSQL, the single writer lock on SQLite): entries, invoice sub-ledger and write-off rows commit together or
  not at all, and a concurrent run waits, then finds the chunk already posted;
- a chunk only ever picks write-offs still ``approved``; a killed run leaves whole chunks only, a re-run continues.

Before posting, inside the chunk's transaction (invoices locked), every item is re-checked against the live
sub-ledger: status, holds, payments after the as-of date, balance changes, another write-off of the same invoice
posted since selection (or twice in one batch), and the parent/child rule (a child invoice whose transferred balance
the parent paid in part). An item that changed is not posted but marked ``skipped`` with the reason.

Accounts come from the policy version recorded on the batch (:func:`writeoffs.accounting.chart.accounts_for_batch`),
never from the policy file in force at posting time. Allowance method: a chunk whose write-offs exceed the
allowance's credit balance is refused, or the shortfall is funded first, as that policy's ``allowance_shortfall``
says (an allowance never goes into a debit balance).

Layout (imports go one way, downward): :mod:`~writeoffs.posting.model` (the report, the chunk hook, the shared
context), then side by side :mod:`~writeoffs.posting.batch` (batch lock, context, approval binding),
:mod:`~writeoffs.posting.recheck` (the locking read and the set-wise findings query), :mod:`~writeoffs.posting.skips`
(the skip rules), :mod:`~writeoffs.posting.build` (journal entries: Python and set-wise SQL) and
:mod:`~writeoffs.posting.allowance_cover` (allowance balance and shortfall), and on top :mod:`~writeoffs.posting.run`
(:func:`post_batch` and one chunk). Every name callers used from ``writeoffs.posting`` is re-exported here.
"""

from writeoffs.posting.allowance_cover import allowance_balance
from writeoffs.posting.batch import _context, lock_batch
from writeoffs.posting.build import _entries, _journal_sources
from writeoffs.posting.model import ChunkHook, PostingReport, SkippedItem, _Context
from writeoffs.posting.recheck import _recheck_rows
from writeoffs.posting.run import post_batch
from writeoffs.posting.skips import _skips, skip_reason

__all__ = [
    "ChunkHook",
    "PostingReport",
    "SkippedItem",
    "_Context",
    "_context",
    "_entries",
    "_journal_sources",
    "_recheck_rows",
    "_skips",
    "allowance_balance",
    "lock_batch",
    "post_batch",
    "skip_reason",
]
