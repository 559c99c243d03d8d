"""The accounting core: one home for every rule that decides what reaches the general ledger.

- :mod:`.chart`    account roles, the default chart, reason -> expense account, and resolving them for an entity
                   (from the policy version recorded on a batch when there is one);
- :mod:`.keys`     one idempotency-key scheme per entry type;
- :mod:`.status`   invoice, batch and write-off statuses as enums with one transition table each;
- :mod:`.entries`  one function per entry type (write-off direct/allowance, recovery, reinstatement, reversal,
                   allowance true-up and funding, AR sync, unapplied cash, opening balance).

Every module that posts builds its entries here. Set-wise SQL that builds entries in the database (PostgreSQL
posting of large batches) is tested line for line against these functions (tests/integration/test_posting_setwise.py).
Nothing here imports Airflow.
"""

from writeoffs.accounting.chart import Accounts, Role, resolve_accounts
from writeoffs.accounting.status import BatchStatus, InvoiceStatus, WriteoffStatus

__all__ = ["Accounts", "BatchStatus", "InvoiceStatus", "Role", "WriteoffStatus", "resolve_accounts"]
