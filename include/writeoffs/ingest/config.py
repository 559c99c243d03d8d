"""The versioned source configuration (``include/config/sources.yaml``), parsed into typed, immutable models.

Onboarding a new ERP export is a config change only: a source entry says how to reach the data (file, SQL, HTTP),
how its columns map onto our canonical fields (:mod:`writeoffs.ingest.fields`) and how values are printed (date
format, separators, yes/no words). Unknown keys are refused, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from writeoffs import strict_yaml
from writeoffs.buckets import Bucket, make_buckets
from writeoffs.errors import ConfigError
from writeoffs.ingest.derive import Condition, Expression, InputColumn, check_dataset
from writeoffs.ingest.fields import DATASETS
from writeoffs.money import check_currency

#: Default location, next to the domain package (the DAG and the CLI both read it from here unless told otherwise).
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "sources.yaml"

#: Separators a number may use; anything else (a digit, a letter, a sign) would make numbers ambiguous.
DECIMAL_SEPARATORS = (".", ",")
THOUSANDS_SEPARATORS = ("", ",", ".", " ", "'", "\u00a0", "\u202f")

_ENV = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityConfig(_Model):
    name: str
    functional_currency: str
    method: Literal["direct", "allowance"] = "direct"

    @field_validator("functional_currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return check_currency(v)


class DatasetConfig(_Model):
    file: str | None = None  # file sources: file name (may contain {as_of})
    sheet: str | None = None  # xlsx: worksheet name (default: the first)
    query: str | None = None  # sql sources: a query with bind parameters (:as_of), never string-formatted
    endpoint: str | None = None  # http sources: path of the first page, relative to the base URL
    columns: dict[str, str] = Field(default_factory=dict)  # source column -> canonical field
    optional: bool = False  # a missing file / empty result is an error unless the dataset is optional
    allow_empty: bool = False  # a header-only file is an error unless allowed (a daily AR export is never empty)
    # Computed fields and row filters (writeoffs.ingest.derive; docs/ingestion.md): declarative, never eval'd.
    inputs: dict[str, InputColumn] = Field(default_factory=dict)  # source column -> {name, type}, never stored
    computed: dict[str, Expression] = Field(default_factory=dict)  # canonical field -> expression
    keep_if: Condition | None = None  # rows for which this is false are filtered (counted, not staged)


class AgingConfig(_Model):
    basis: Literal["due_date", "invoice_date"] = "due_date"
    bucket_bounds: tuple[int, ...] = (30, 60, 90, 120, 180, 365)

    def buckets(self) -> tuple[Bucket, ...]:
        return make_buckets(self.bucket_bounds)


class SourceConfig(_Model):
    name: str = ""
    kind: Literal["file", "sql", "http"]
    description: str = ""
    on_bad_rows: Literal["reject", "quarantine"] = "reject"
    # Where the data is. file: a directory (may contain ${ENV} and {as_of}); sql / http: the Airflow connection.
    location: str | None = None
    conn_id: str | None = None
    url: str | None = None  # sql: SQLAlchemy URL / http: base URL, when not resolved from a connection
    format: Literal["csv", "xlsx", "parquet"] | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    quotechar: str = '"'
    # CSV: may a quoted value contain line breaks? Off by default (fail closed): a stray quote that closes on a
    # later line is indistinguishable from such a value and would silently swallow the lines in between.
    newlines_in_values: bool = False
    decimal_sep: str = "."
    thousands_sep: str = ""
    # How the source writes a negative number: -12.34 (leading_minus), (12.34) (parentheses) or 12.34- (trailing_
    # minus). A sign written any other way is `ambiguous_sign` (quarantined), never guessed. Typed numbers from
    # databases, JSON, XLSX and Parquet are rendered in this style before they are read (writeoffs.ingest.sources).
    negative_style: Literal["leading_minus", "parentheses", "trailing_minus"] = "leading_minus"
    date_format: str = "%Y-%m-%d"
    # Plausible dates (every date field): not before ``earliest_date``, not more than ``max_days_ahead`` days after
    # the business date. Outside: quarantined as ``implausible_date`` (year 0023 is a typo, not a 2000-year-old debt).
    # Event dates (invoice, payment, activity) after the business date are refused by the validation gate.
    earliest_date: date = date(1900, 1, 1)
    max_days_ahead: int = Field(default=3660, ge=0)
    true_values: tuple[str, ...] = ("true", "1", "yes", "y", "t")
    false_values: tuple[str, ...] = ("false", "0", "no", "n", "f")
    default_currency: str | None = None
    entity: str | None = None  # constant entity for single-company exports
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # field -> {source value -> canonical}
    control_file: str | None = None  # JSON control totals shipped with the export (kept with the batch)
    control_as_of_must_match: bool = True
    chunk_rows: int = 100_000
    # http
    timeout_s: float = 30.0
    retries: int = 4
    backoff_s: float = 1.0
    page_param: str | None = None  # paginate with ?<page_param>=k instead of following "next"
    datasets: dict[str, DatasetConfig]

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, v: dict[str, DatasetConfig]) -> dict[str, DatasetConfig]:
        unknown = set(v) - set(DATASETS)
        if unknown:
            raise ValueError(f"unknown dataset(s) {sorted(unknown)}; expected some of {sorted(DATASETS)}")
        if "invoices" not in v:
            raise ValueError("every source must provide the invoices dataset")
        return v

    @field_validator("default_currency")
    @classmethod
    def _currency(cls, v: str | None) -> str | None:
        return check_currency(v) if v else v

    @model_validator(mode="after")
    def _consistent(self) -> SourceConfig:
        for ds_name, ds in self.datasets.items():
            canon = {f.name for f in DATASETS[ds_name]}
            bad = sorted(set(ds.columns.values()) - canon)
            if bad:
                raise ValueError(f"datasets.{ds_name}.columns maps onto unknown field(s) {bad}")
            check_dataset(
                ds_name,
                {f.name: f.kind for f in DATASETS[ds_name]},
                set(ds.columns.values()),
                ds.inputs,
                ds.computed,
                ds.keep_if,
                {k for k, v in (("entity", self.entity), ("currency", self.default_currency)) if v},
            )
            if self.kind == "file" and not ds.file:
                raise ValueError(f"datasets.{ds_name}.file is required for a file source")
            if self.kind == "sql" and not ds.query:
                raise ValueError(f"datasets.{ds_name}.query is required for a sql source")
            if self.kind == "http" and not ds.endpoint:
                raise ValueError(f"datasets.{ds_name}.endpoint is required for an http source")
        if self.kind == "file" and (not self.location or not self.format):
            raise ValueError("a file source needs location and format")
        if self.kind in ("sql", "http") and not (self.conn_id or self.url):
            raise ValueError(f"a {self.kind} source needs conn_id (Airflow connection) or url")
        if self.decimal_sep == self.thousands_sep:
            raise ValueError("decimal_sep and thousands_sep must differ")
        if self.decimal_sep not in DECIMAL_SEPARATORS:
            raise ValueError(f"decimal_sep must be one of {list(DECIMAL_SEPARATORS)}, not {self.decimal_sep!r}")
        if self.thousands_sep not in THOUSANDS_SEPARATORS:
            raise ValueError(
                f"thousands_sep must be one of {list(THOUSANDS_SEPARATORS)} ('' = no grouping), "
                f"not {self.thousands_sep!r}"
            )
        return self

    def directory(self, as_of: date) -> Path:
        return Path(expand(self.location or "", as_of))


class SourcesConfig(_Model):
    version: str
    entities: dict[str, EntityConfig] = Field(default_factory=dict)
    # bootstrap: an entity listed under ``entities`` but unknown to the ledger is created (chart of accounts,
    # periods); refuse: the merge stops with an error naming the entity. Entities in neither place are always
    # refused (their rows are quarantined as ``unknown_entity``).
    unknown_entities: Literal["bootstrap", "refuse"] = "bootstrap"
    aging: AgingConfig = AgingConfig()
    sources: dict[str, Annotated[SourceConfig, Field()]]
    content_hash: str = ""

    def source(self, name: str) -> SourceConfig:
        try:
            return self.sources[name]
        except KeyError:
            raise ConfigError(f"source {name!r} is not configured (known: {sorted(self.sources)})") from None


def expand(template: str, as_of: date | None = None) -> str:
    """``${ENV}`` / ``${ENV:-default}`` from the environment, then ``{as_of}`` as an ISO date."""

    def env(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1), m.group(2))
        if value is None:
            raise ConfigError(f"environment variable {m.group(1)} is not set (used in {template!r})")
        return value

    out = _ENV.sub(env, template)
    return out.replace("{as_of}", as_of.isoformat()) if as_of else out


def parse(data: dict[str, Any], *, origin: str = "<dict>", content_hash: str = "") -> SourcesConfig:
    try:
        srcs = data.get("sources") if isinstance(data, dict) else None
        if isinstance(srcs, dict):
            data = {**data, "sources": {k: {**v, "name": k} for k, v in srcs.items() if isinstance(v, dict)}}
        return SourcesConfig.model_validate({**data, "content_hash": content_hash})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{origin}: {where}: {first['msg']} ({len(exc.errors())} problem(s))") from None


def load(path: str | Path | None = None) -> SourcesConfig:
    """Load and validate the source config (``WRITEOFFS_SOURCES_CONFIG`` or the committed default)."""

    p = strict_yaml.config_file(path, "WRITEOFFS_SOURCES_CONFIG", DEFAULT_PATH)
    raw = strict_yaml.read_config(p, "source config")
    data = strict_yaml.load(raw, str(p))  # duplicate keys are an error naming the line
    return parse(data, origin=str(p), content_hash=hashlib.sha256(raw).hexdigest())
