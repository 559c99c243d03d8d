"""Allowance configuration: loss rates per aging bucket, parsed and validated from ``allowance.yaml``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from writeoffs import strict_yaml
from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.errors import ConfigError

#: Where the configuration lives unless ``WRITEOFFS_ALLOWANCE_PATH`` or an explicit path says otherwise.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "allowance.yaml"
CONFIG_PATH_ENV = "WRITEOFFS_ALLOWANCE_PATH"
#: ``allowance_estimates.loss_rate`` is NUMERIC(9, 6): a fraction with 6 decimals = a percentage with 4.
RATE_DECIMALS = 6
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class AllowanceConfig:
    """Validated loss rates (fractions, e.g. ``Decimal('0.005')`` for 0.5 %) per aging bucket label."""

    version: str
    default_rates: Mapping[str, Decimal]
    entity_rates: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)  # overrides only
    source: str = "<config>"

    def rates_for(self, entity: str) -> dict[str, Decimal]:
        """The entity's rates: defaults, with its overrides applied bucket by bucket."""
        return {**self.default_rates, **self.entity_rates.get(entity, {})}

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical meaning (not of the file: comments and formatting do not change it)."""
        body = {
            "version": self.version,
            "loss_rates": {k: format(v, "f") for k, v in sorted(self.default_rates.items())},
            "entities": {
                e: {k: format(v, "f") for k, v in sorted(r.items())} for e, r in sorted(self.entity_rates.items())
            },
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def parse_rate(value: object, where: str) -> Decimal:
    """``"0.5%"`` -> ``Decimal("0.005")``. Bare numbers are refused: 0.5 could mean 0.5 % or 50 %."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ConfigError(
            f'{where}: {value!r} is not a percentage; write loss rates as quoted percentages, e.g. "0.5%"'
        )
    raw = value.strip()
    if not raw.endswith("%"):
        raise ConfigError(f"{where}: {value!r} must end with '%' (e.g. \"2%\"); a bare number is ambiguous")
    number = raw[:-1].strip()
    try:
        pct = Decimal(number)
    except ArithmeticError:
        raise ConfigError(f"{where}: {value!r} is not a number followed by '%'") from None
    if not pct.is_finite() or not number or number.lower().startswith(("nan", "inf", "+inf", "-inf")):
        raise ConfigError(f"{where}: {value!r} is not a finite percentage")
    if pct < 0 or pct > _HUNDRED:
        raise ConfigError(f"{where}: {value!r} must be between 0% and 100%")
    fraction = pct / _HUNDRED
    if fraction != fraction.quantize(Decimal(1).scaleb(-RATE_DECIMALS)):
        raise ConfigError(f"{where}: {value!r} has more than {RATE_DECIMALS - 2} decimals")
    return fraction.quantize(Decimal(1).scaleb(-RATE_DECIMALS))


def _rates(raw: object, where: str, known: Iterable[str] | None) -> dict[str, Decimal]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f'{where}: expected a mapping of aging bucket -> percentage, e.g. {{current: "0.5%"}}')
    out: dict[str, Decimal] = {}
    allowed = set(known) if known is not None else None
    for bucket, value in raw.items():
        label = str(bucket).strip()
        if not label:
            raise ConfigError(f"{where}: empty bucket label")
        if allowed is not None and label not in allowed:
            raise ConfigError(f"{where}.{label}: unknown aging bucket {label!r}; the defaults define {sorted(allowed)}")
        out[label] = parse_rate(value, f"{where}.{label}")
    return out


def parse_config(content: str | Mapping[str, Any], *, source: str = "<config>") -> AllowanceConfig:
    """Validate an allowance configuration (YAML text or an already parsed mapping). Errors name the field."""
    if isinstance(content, str):
        import yaml

        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            raise ConfigError(f"allowance config {source}: not valid YAML: {exc}") from None
    else:
        data = content
    if not isinstance(data, Mapping):
        raise ConfigError(f"allowance config {source}: expected a mapping at the top level")
    unknown = set(data) - {"version", "loss_rates", "entities"}
    if unknown:
        raise ConfigError(f"allowance config {source}: unknown field(s) {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f'allowance config {source}: version: required, a quoted string such as "2026.11.0"')
    if "loss_rates" not in data:
        raise ConfigError(f"allowance config {source}: loss_rates: required (default rate per aging bucket)")
    defaults = _rates(data["loss_rates"], f"allowance config {source}: loss_rates", None)
    entities_raw = data.get("entities") or {}
    if not isinstance(entities_raw, Mapping):
        raise ConfigError(f"allowance config {source}: entities: expected a mapping of entity code -> overrides")
    per_entity: dict[str, dict[str, Decimal]] = {}
    for code, body in entities_raw.items():
        where = f"allowance config {source}: entities.{code}"
        if not isinstance(body, Mapping) or set(body) != {"loss_rates"}:
            raise ConfigError(f"{where}: expected exactly one field, loss_rates")
        per_entity[str(code)] = _rates(body["loss_rates"], f"{where}.loss_rates", defaults)
    return AllowanceConfig(version.strip(), defaults, per_entity, source)


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    return strict_yaml.config_file(path, CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> AllowanceConfig:
    """Load and validate the configuration (argument, else ``$WRITEOFFS_ALLOWANCE_PATH``, else include/config)."""
    p = config_path(path)
    content = strict_yaml.read_config(p, "allowance config").decode("utf-8")
    return parse_config(content, source=str(p))


def default_config() -> AllowanceConfig:
    """The default rates over the default buckets (used by tests and as documentation)."""
    pct = ("0.5%", "2%", "5%", "10%", "20%", "35%", "60%", "90%")
    return parse_config(
        {"version": "default", "loss_rates": {b.label: p for b, p in zip(DEFAULT_BUCKETS, pct, strict=True)}},
        source="<built-in defaults>",
    )
