"""Allowance for Doubtful Accounts: estimate it from the aging as of its date, then post the adjustment.

Allowance-method entities (``legal_entities.writeoff_method = 'allowance'``) write bad debts off against a reserve
estimated in advance. Per entity and currency, as of a business date:

    required = sum over aging buckets of ROUND(open balance in bucket x loss rate, currency minor unit)

with loss rates from ``include/config/allowance.yaml`` (defaults, optionally overridden per entity). The estimate
rows are stored in ``allowance_estimates`` (one per as-of date, entity, currency and bucket; every configured bucket
gets a row, zeros included, so a stored estimate is complete and says "done" for its date). The GL allowance
account (a contra-asset: credit balance) is then brought to ``required`` by ONE entry per entity and currency:

- increase: ``Dr Bad Debt Expense / Cr Allowance for Doubtful Accounts``
- decrease: ``Dr Allowance for Doubtful Accounts / Cr Bad Debt Expense``

Functional amounts use the invoices' booked ``fx_rate`` (the same rule as posting and recovery): the functional
requirement is ROUND(sum(open balance x fx_rate) x loss rate) per bucket; the adjustment is the difference to the
account's functional balance. Remeasuring a foreign-currency reserve at closing rates (FX gains and losses) is out
of scope; in the rare case where the functional difference points the other way than the transaction difference,
the entry carries no functional amount and the difference is reported (``functional_unadjusted``).

Exactly once: the entry's idempotency key is ``alw:<entity>:<currency>:<as_of>`` and the estimate rows are inserted
with ``ON CONFLICT DO NOTHING``; both commit in the caller's transaction, so a re-run of a date finds its estimate
stored and posts nothing, and the next date posts only the difference to what the books already hold.

**The AR an estimate covers** is the sub-ledger's as of the estimate's date, from the invoice movements
(:func:`writeoffs.subledger.aged_invoices_sql`): every movement dated on or before it, whenever it was recorded. No
snapshot needs to exist for the date (a month end without an ingest is the normal case), and a write-off dated on or
before the date is out of AR whether it was posted before or after the day's aging ran (counting it again would
over-reserve). The basis and buckets are those of the latest aging run on or before the date (the ingest's
configuration), else due date and the default buckets. The rows stored in ``allowance_estimates`` hold those open
balances.

Estimates are booked in date order: a date before an estimate that is already booked is refused (its adjustment
would silently invalidate the later one). A closed (or missing) fiscal period is refused before anything is written.

Amounts are set-wise: PostgreSQL computes the estimate rows with one ``INSERT ... SELECT`` (exact NUMERIC). SQLite
stores NUMERIC as binary floating point, so there the same aggregate is summed exactly in integer ten-thousandths
and rounded in Python (a handful of rows: one per entity, currency and bucket), as ``writeoffs.posting`` does for its
set-wise path. The integration tests assert the same exact figures on both databases.

Layout (imports go one way, downward): :mod:`~writeoffs.allowance.config` (loss rates: parsing, validation,
loading), :mod:`~writeoffs.allowance.model` (the results and the entry key) and :mod:`~writeoffs.allowance.sql`
(inline tables, the aging subquery, exact sums) at the base; :mod:`~writeoffs.allowance.scope` (the pairs to
estimate, those already done, the refusals) and :mod:`~writeoffs.allowance.amounts` (the stored estimate rows, the
functional requirement, the GL balances) on them; :mod:`~writeoffs.allowance.booking` (per pair: the result and the
adjustment entry; posting) and on top :mod:`~writeoffs.allowance.estimate` (:func:`estimate_allowance`,
:func:`run_allowance`). Every name callers used from ``writeoffs.allowance`` is re-exported here.
"""

from writeoffs.allowance.config import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    RATE_DECIMALS,
    AllowanceConfig,
    config_path,
    default_config,
    load_config,
    parse_config,
    parse_rate,
)
from writeoffs.allowance.estimate import estimate_allowance, has_allowance_entities, run_allowance
from writeoffs.allowance.model import ENTRY_PREFIX, SOURCE_TYPE, AllowanceResult, BucketEstimate, PairResult, entry_key

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "ENTRY_PREFIX",
    "RATE_DECIMALS",
    "SOURCE_TYPE",
    "AllowanceConfig",
    "AllowanceResult",
    "BucketEstimate",
    "PairResult",
    "config_path",
    "default_config",
    "entry_key",
    "estimate_allowance",
    "has_allowance_entities",
    "load_config",
    "parse_config",
    "parse_rate",
    "run_allowance",
]
