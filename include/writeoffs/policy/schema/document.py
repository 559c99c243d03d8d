"""The policy file's document (:class:`PolicyFile`) and its layered rules: merged and validated per layer."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from writeoffs.errors import ConfigError
from writeoffs.policy.schema.approval import Approval
from writeoffs.policy.schema.fields import (
    DEFAULT_REASON_ACCOUNTS,
    Reason,
    _Strict,
)
from writeoffs.policy.schema.rules import Rules


class PolicyFile(_Strict):
    version: str = Field(min_length=1, max_length=32)
    aging_basis: Literal["due_date", "invoice_date"] = "due_date"
    #: A collection activity with this outcome marks the invoice as settled: the remainder may be written off.
    settlement_outcome: str = Field("settled", min_length=1, max_length=64)
    reasons: dict[Reason, str] = Field(default_factory=lambda: dict(DEFAULT_REASON_ACCOUNTS))
    approval: Approval
    #: Allowance-method posting when a chunk's write-offs exceed the allowance's credit balance: ``refuse`` the
    #: chunk (default), or ``fund`` the shortfall first (``Dr Bad Debt Expense / Cr Allowance``, audited).
    allowance_shortfall: Literal["refuse", "fund"] = "refuse"
    defaults: Rules = Rules()
    #: Raw override layers; validated by :func:`_validate_layers` with their own paths in error messages.
    segments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("reasons", mode="after")
    @classmethod
    def _all_reasons(cls, v: dict[Reason, str]) -> dict[Reason, str]:
        merged = {**{Reason(k): a for k, a in DEFAULT_REASON_ACCOUNTS.items()}, **v}
        for reason, account in merged.items():
            if not str(account).strip():
                raise ValueError(f"reason {reason.value} has an empty GL account")
        return merged


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _has_path(layer: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = layer
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(file)"


def _format_errors(exc: ValidationError, layers: list[tuple[str, Mapping[str, Any]]] | None = None) -> list[str]:
    """``field.path: reason`` per error; for merged rule layers, attribute each error to the layer that set it."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        prefix = ""
        if layers:
            # The most specific layer that mentions the failing key is the one to fix.
            for name, layer in reversed(layers):
                if _has_path(layer, loc) or (name and not loc):
                    prefix = name
                    break
        path = ".".join(p for p in (prefix, _fmt_loc(loc) if loc else "") if p)
        out.append(f"{path or '(file)'}: {err['msg']}")
    return out


def _layers(model: PolicyFile, entity: str | None, segment: str | None) -> list[tuple[str, Mapping[str, Any]]]:
    layers: list[tuple[str, Mapping[str, Any]]] = [("defaults", model.defaults.model_dump(mode="python"))]
    if segment is not None and segment in model.segments:
        layers.append((f"segments.{segment}", model.segments[segment]))
    if entity is not None and entity in model.entities:
        ent = {k: v for k, v in model.entities[entity].items() if k != "segments"}
        layers.append((f"entities.{entity}", ent))
        ent_segments = model.entities[entity].get("segments") or {}
        if segment is not None and segment in ent_segments:
            layers.append((f"entities.{entity}.segments.{segment}", ent_segments[segment]))
    return layers


def _merge_validate(layers: list[tuple[str, Mapping[str, Any]]]) -> Rules:
    merged: dict[str, Any] = {}
    for _, layer in layers:
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{layers[-1][0]}: must be a mapping of rule overrides")
        merged = _deep_merge(merged, layer)
    try:
        return Rules.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError("; ".join(_format_errors(exc, layers))) from None


def _resolve(model: PolicyFile, entity: str, segment: str) -> Rules:
    return _merge_validate(_layers(model, entity, segment))


def _validate_layers(model: PolicyFile) -> None:
    """Validate every declared combination now, so that a bad override fails the load, not a later run."""
    errors: list[str] = []
    combos: list[tuple[str | None, str | None]] = [(None, s) for s in model.segments]
    for ent, body in model.entities.items():
        if not isinstance(body, Mapping):
            errors.append(f"entities.{ent}: must be a mapping of rule overrides")
            continue
        segs = body.get("segments") or {}
        if not isinstance(segs, Mapping):
            errors.append(f"entities.{ent}.segments: must be a mapping of segment -> overrides")
            continue
        combos.append((ent, None))
        combos += [(ent, s) for s in segs]
        combos += [(ent, s) for s in model.segments]
    for ent, seg in combos:
        try:
            _merge_validate(_layers(model, ent, seg))
        except ConfigError as exc:
            for part in str(exc).split("; "):
                if part not in errors:
                    errors.append(part)
    if errors:
        raise ConfigError("; ".join(errors))
