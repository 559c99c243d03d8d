"""One idempotency-key scheme per entry type. ``journal_entries.idempotency_key`` is unique in the database, so a
key names one entry for ever: posting the same thing twice finds the first entry instead of booking again.

| entry type          | key                                                   |
|---------------------|-------------------------------------------------------|
| write-off           | ``wo:<as_of>:<policy_hash>:<invoice_id>`` (= ``writeoffs.idempotency_key``) |
| reversal            | ``rev:<original entry id>``                           |
| recovery            | ``rec:<entity>:<payment_ref>:<invoice_id>``           |
| unapplied cash      | ``unapplied:<entity>:<payment_ref>:<invoice_id>``     |
| allowance true-up   | ``alw:<entity>:<currency>:<as_of>``                   |
| allowance funding   | ``alw-fund:<batch_id>:<chunk first write-off id>``    |
| AR sync             | ``ar-sync:<source>:<as_of>:<entity>:<currency>:<load>`` |
| opening balance     | ``opening:<entity>:<currency>:<as_of>``               |
"""

from __future__ import annotations

from datetime import date

from writeoffs.errors import LedgerError

WRITEOFF_PREFIX = "wo:"
ALLOWANCE_PREFIX = "alw:"


def writeoff_candidate_prefix(as_of: date, policy_hash: str) -> str:
    """Prefix of ``writeoffs.idempotency_key`` for one selection run; the key ends with the invoice id."""
    return f"{WRITEOFF_PREFIX}{as_of.isoformat()}:{policy_hash}:"


def writeoff_entry(writeoff_key: str) -> str:
    """The write-off's journal entry key: the write-off's own key (already ``wo:``-prefixed), never prefixed twice."""
    if not writeoff_key.startswith(WRITEOFF_PREFIX):
        return f"{WRITEOFF_PREFIX}{writeoff_key}"
    return writeoff_key


def reversal(original_entry_id: int) -> str:
    return f"rev:{original_entry_id}"


def recovery(entity: str, payment_ref: str, invoice_id: int) -> str:
    return f"rec:{entity}:{payment_ref}:{invoice_id}"


def unapplied_cash(entity: str, payment_ref: str, invoice_id: int) -> str:
    return f"unapplied:{entity}:{payment_ref}:{invoice_id}"


def allowance(entity: str, currency: str, as_of: date) -> str:
    return f"{ALLOWANCE_PREFIX}{entity}:{currency}:{as_of.isoformat()}"


def allowance_funding(batch_id: int, first_writeoff_id: int) -> str:
    return f"alw-fund:{batch_id}:{first_writeoff_id}"


def ar_sync(source: str, as_of: date, entity: str, currency: str, load_no: int) -> str:
    return f"ar-sync:{source}:{as_of.isoformat()}:{entity}:{currency}:{load_no}"


def opening_balance(entity: str, currency: str, as_of: date) -> str:
    return f"opening:{entity}:{currency}:{as_of.isoformat()}"


def check_length(key: str) -> str:
    if len(key) > 200:
        raise LedgerError(f"idempotency key longer than 200 characters: {key[:60]}...")
    return key
