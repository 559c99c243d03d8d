"""The write-off policy file: typed schema, layered rules, loader.

One YAML file holds every non-secret knob of the write-off process: thresholds, collection effort, exclusions,
small-balance tolerances, the reason -> GL account map and the approval tiers. Rules are layered, most specific
last: ``defaults`` < ``segments.<segment>`` < ``entities.<entity>`` < ``entities.<entity>.segments.<segment>``.
Every layer is validated at load time against the full schema (merged with the layers below it), so a typo in an
override is reported with its own path instead of surfacing months later when that customer segment ages.

The content hash is sha256 over the canonical JSON of the *validated* policy: comments and formatting do not
change it (so re-indenting the file does not create a new policy version), any change of meaning does.

Submodules: :mod:`.fields` (the reason catalogue, money field types), :mod:`.rules` (the rules a layer sets),
:mod:`.approval` (the approval tiers), :mod:`.document` (the file's document and its layers, merged and validated),
:mod:`.model` (the validated :class:`Policy`), :mod:`.load` (parsing, hashing, loading).
"""

from __future__ import annotations

from writeoffs.policy.schema.approval import Approval, RestrictionSpec, TierSpec
from writeoffs.policy.schema.document import PolicyFile, _deep_merge
from writeoffs.policy.schema.fields import DEFAULT_REASON_ACCOUNTS, CurrencyAmounts, Money, Reason
from writeoffs.policy.schema.load import (
    DEFAULT_POLICY_PATH,
    POLICY_PATH_ENV,
    canonical_hash,
    load_policy,
    parse_policy,
    policy_path,
)
from writeoffs.policy.schema.model import Policy
from writeoffs.policy.schema.rules import Effort, Exclusions, ParentChild, Partial, RouteDays, Rules, SmallBalance

__all__ = [
    "DEFAULT_POLICY_PATH",
    "DEFAULT_REASON_ACCOUNTS",
    "POLICY_PATH_ENV",
    "Approval",
    "CurrencyAmounts",
    "Effort",
    "Exclusions",
    "Money",
    "ParentChild",
    "Partial",
    "Policy",
    "PolicyFile",
    "Reason",
    "RestrictionSpec",
    "RouteDays",
    "Rules",
    "SmallBalance",
    "TierSpec",
    "_deep_merge",
    "canonical_hash",
    "load_policy",
    "parse_policy",
    "policy_path",
]
