"""Parsing, hashing and loading the policy file."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from writeoffs import strict_yaml
from writeoffs.errors import ConfigError
from writeoffs.policy.schema.document import (
    PolicyFile,
    _format_errors,
    _validate_layers,
)
from writeoffs.policy.schema.model import Policy

#: Where the policy lives unless ``WRITEOFFS_POLICY_PATH`` or an explicit path says otherwise.
DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[3] / "config" / "policy.yaml"
POLICY_PATH_ENV = "WRITEOFFS_POLICY_PATH"


#: Fields added after policies were first recorded: left out of the hash while they hold their default, so that a
#: recorded policy keeps the hash it was recorded (and decided) under. Paths into ``model_dump``.
_HASH_OMITTED_AT_DEFAULT: tuple[tuple[tuple[str, ...], object], ...] = (
    (("allowance_shortfall",), "refuse"),
    (("defaults", "reversal_cooling_days"), None),
)


def canonical_hash(model: PolicyFile) -> str:
    dumped = model.model_dump(mode="json")
    for path, default in _HASH_OMITTED_AT_DEFAULT:
        node = dumped
        for part in path[:-1]:
            node = node.get(part, {})
        if path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    payload = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_policy(text: str, *, source: str = "<text>") -> Policy:
    """Validate policy YAML text. Raises :class:`ConfigError` naming the source, each bad field and why."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy {source}: not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"policy {source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        model = PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"policy {source}: " + "; ".join(_format_errors(exc))) from None
    try:
        _validate_layers(model)
    except ConfigError as exc:
        raise ConfigError(f"policy {source}: {exc}") from None
    return Policy(model=model, text=text, content_hash=canonical_hash(model), source=source)


def policy_path(path: str | os.PathLike[str] | None = None) -> Path:
    return strict_yaml.config_file(path, POLICY_PATH_ENV, DEFAULT_POLICY_PATH)


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate the policy file (argument, else ``$WRITEOFFS_POLICY_PATH``, else include/config)."""
    p = policy_path(path)
    return parse_policy(strict_yaml.read_config(p, "policy").decode("utf-8"), source=str(p))
