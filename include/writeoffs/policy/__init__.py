"""Write-off policy as code: typed policy file, charge-off, candidate selection with evidence, batching, what-if.

Public entry points (the approval and posting code import these):

- :func:`load_policy` / :class:`Policy` (``policy.tiers``, ``policy.version``, ``policy.content_hash``,
  ``policy.reason_account(reason)``, ``policy.rules_for(entity, segment)``);
- :mod:`writeoffs.policy.registry` (which policy is in force), :mod:`~writeoffs.policy.chargeoff`,
  :mod:`~writeoffs.policy.selection`, :mod:`~writeoffs.policy.batching`, :mod:`~writeoffs.policy.whatif`;
- :func:`writeoffs.policy.service.prepare` runs a whole as-of date (charge-off, candidates, batches).

The write-off *method* (direct or allowance) is not a policy setting: ``legal_entities.writeoff_method`` in the
ledger is the single source of truth for it.
"""

from __future__ import annotations

from writeoffs.policy.schema import DEFAULT_POLICY_PATH, POLICY_PATH_ENV, Policy, Reason, load_policy, parse_policy

__all__ = ["DEFAULT_POLICY_PATH", "POLICY_PATH_ENV", "Policy", "Reason", "load_policy", "parse_policy"]
