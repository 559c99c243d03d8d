"""Validation configuration (``include/config/validation.yaml``): severities, quarantine guard, tie-out tolerance.

Severity is configuration, not code: finance ops can downgrade a check to ``warning`` (or promote one to
``blocking``) without a release. Unknown keys are refused and every pattern must match at least one known check,
so a typo fails loudly instead of silently leaving a check at its default.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from writeoffs import strict_yaml
from writeoffs.errors import ConfigError

Severity = Literal["blocking", "warning"]

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "validation.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse_float(v: object, how: str) -> object:
    """A decimal setting as read from YAML, refused when YAML made it a float (0.01 is read as one): ``how`` says
    how to write it instead."""
    if isinstance(v, float):
        raise ValueError(f"write {how}")
    return v


class TieOutConfig(_Model):
    tolerance: Decimal = Decimal("0.01")

    @field_validator("tolerance", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        return _refuse_float(v, 'the tolerance as a quoted string, e.g. "0.01" (money is never a float)')

    @field_validator("tolerance")
    @classmethod
    def _nonneg(cls, v: Decimal) -> Decimal:
        if v < 0 or not v.is_finite():
            raise ValueError("tolerance must be a finite amount >= 0")
        return v


class ControlKeys(_Model):
    """Where a source's control file (JSON, kept verbatim on the ingest batch) reports a dataset's totals.

    Dotted paths into the JSON object; a key the file does not have means "not reported": the check is skipped.
    """

    rows: str | None = None
    amount: str | None = None


def _default_control_keys() -> dict[str, ControlKeys]:
    return {
        # The control.json layout of the sample ERP export (docs/sample-data.md).
        "invoices": ControlKeys(rows="invoices.rows", amount="invoices.amount_total"),
        "payments": ControlKeys(rows="payments.rows", amount="payments.amount_total"),
        "activities": ControlKeys(rows="activities.rows"),
    }


class ValidationConfig(_Model):
    version: str = "builtin"
    severity: dict[str, Severity] = Field(default_factory=dict)
    control_keys: dict[str, ControlKeys] = Field(default_factory=_default_control_keys)
    max_quarantined_fraction: Decimal = Decimal("0.05")
    tie_out: TieOutConfig = TieOutConfig()
    reports_dir: str = "${WRITEOFFS_DATA_DIR:-.data}/reports/validation"
    #: Targets with at least this many rows have their row-level checks counted by one SQL pass (GX still checks
    #: structure and control totals and renders every result); smaller ones are counted by GX itself. 0: always SQL.
    fast_path_min_rows: int = Field(default=50_000, ge=0)
    content_hash: str = ""

    @field_validator("max_quarantined_fraction", mode="before")
    @classmethod
    def _fraction_no_float(cls, v: object) -> object:
        return _refuse_float(v, 'the fraction as a quoted string, e.g. "0.05"')

    @field_validator("max_quarantined_fraction")
    @classmethod
    def _fraction_range(cls, v: Decimal) -> Decimal:
        if not (0 <= v <= 1):
            raise ValueError("max_quarantined_fraction must be between 0 and 1")
        return v

    def severity_of(self, check: str, default: Severity) -> Severity:
        """The configured severity of ``check``: exact name, else the longest matching pattern, else ``default``."""
        if check in self.severity:
            return self.severity[check]
        matches = [p for p in self.severity if fnmatch.fnmatchcase(check, p)]
        if not matches:
            return default
        return self.severity[max(matches, key=len)]

    def unmatched_patterns(self, known: list[str]) -> list[str]:
        return sorted(p for p in self.severity if not any(fnmatch.fnmatchcase(k, p) for k in known))

    def reports_path(self) -> Path:
        return Path(_expand(self.reports_dir)).resolve()


def _expand(template: str) -> str:
    import re

    def env(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1)) or m.group(2)
        if value is None:
            raise ConfigError(f"environment variable {m.group(1)} is not set (used in {template!r})")
        return value

    return re.sub(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}", env, template)


def parse(data: dict[str, Any] | None, *, origin: str = "<dict>", content_hash: str = "") -> ValidationConfig:
    try:
        cfg = ValidationConfig.model_validate({**(data or {}), "content_hash": content_hash})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{origin}: {where}: {first['msg']} ({len(exc.errors())} problem(s))") from None
    from writeoffs.validation.checks import all_check_names

    unmatched = cfg.unmatched_patterns(all_check_names())
    if unmatched:
        raise ConfigError(f"{origin}: severity key(s) {unmatched} match no check (see docs/validation.md)")
    return cfg


def load(path: str | Path | None = None) -> ValidationConfig:
    """Load ``path``, else ``WRITEOFFS_VALIDATION_CONFIG``, else the committed default; a missing file is refused
    (``strict_yaml.config_file``), as for every configuration file."""
    p = strict_yaml.config_file(path, "WRITEOFFS_VALIDATION_CONFIG", DEFAULT_PATH)
    raw = strict_yaml.read_config(p, "validation config")
    data = strict_yaml.load(raw, str(p))  # duplicate keys are an error naming the line
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return parse(data, origin=str(p), content_hash=hashlib.sha256(raw).hexdigest())
