"""The write-off policy file: typed schema, layered rules, loader.

One YAML file holds every non-secret knob of the write-off process: thresholds, collection effort, exclusions,
small-balance tolerances, the reason -> GL account map and the approval tiers. Rules are layered, most specific
last: ``defaults`` < ``segments.<segment>`` < ``entities.<entity>`` < ``entities.<entity>.segments.<segment>``.
Every layer is validated at load time against the full schema (merged with the layers below it), so a typo in an
override is reported with its own path instead of surfacing months later when that customer segment ages.

The content hash is sha256 over the canonical JSON of the *validated* policy: comments and formatting do not
change it (so re-indenting the file does not create a new policy version), any change of meaning does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from writeoffs.accounting.chart import DEFAULT_REASON_ACCOUNTS as _CORE_REASON_ACCOUNTS
from writeoffs.errors import ConfigError, InvalidAmount, UnknownCurrency
from writeoffs.money import check_currency, to_decimal
from writeoffs.tiers import AUTO_TIER, Restriction, Tier

#: Where the policy lives unless ``WRITEOFFS_POLICY_PATH`` or an explicit path says otherwise.
DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "config" / "policy.yaml"
POLICY_PATH_ENV = "WRITEOFFS_POLICY_PATH"


class Reason(StrEnum):
    """The fixed reason catalogue. Not user-extensible on purpose: reports and GL mapping rely on a closed set."""

    UNCOLLECTIBLE = "uncollectible_after_collections"
    BANKRUPTCY = "bankruptcy"
    DISSOLVED = "customer_dissolved"
    SMALL_BALANCE = "small_balance"
    SETTLEMENT = "settlement_remainder"
    DISPUTE_LOST = "dispute_lost"
    STATUTE = "statute_expired"


#: Default GL expense account per reason: the accounting core's map (one home), keyed by the enum here.
DEFAULT_REASON_ACCOUNTS: dict[str, str] = {Reason(k): v for k, v in _CORE_REASON_ACCOUNTS.items()}


def _money(value: object) -> Decimal:
    try:
        dec = to_decimal(value)
    except InvalidAmount as exc:
        # YAML reads 50.00 as a float; money is never a float, so ask for a quoted string instead of guessing.
        raise ValueError(f"{exc.reason} (write amounts as quoted strings in YAML, e.g. '50.00')") from None
    if dec < 0:
        raise ValueError(f"amount {value!r} must not be negative")
    return dec


Money = Annotated[Decimal, BeforeValidator(_money)]


def _currency_map(value: object) -> object:
    if not isinstance(value, Mapping):
        return value
    out = {}
    for k, v in value.items():
        try:
            out[check_currency(str(k))] = v
        except UnknownCurrency as exc:
            raise ValueError(exc.reason) from None
    return out


CurrencyAmounts = Annotated[dict[str, Money], BeforeValidator(_currency_map)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Effort(_Strict):
    """Collection effort that must be documented before an uncollectible write-off."""

    min_contact_attempts: int = Field(6, ge=0)
    min_demand_letters: int = Field(2, ge=0)
    min_agency_days: int = Field(60, ge=0)
    #: Balances above this (per currency) also need a legal action on file; currency absent = never required.
    legal_action_required_above: CurrencyAmounts = Field(default_factory=dict)


class Exclusions(_Strict):
    open_dispute: bool = True
    active_payment_plan: bool = True
    #: A regular payment on the invoice within this many days blocks a write-off (the customer is still paying).
    recent_payment_days: int | None = Field(90, ge=0)


class SmallBalance(_Strict):
    #: At or below this open balance (per currency) a write-off is auto-approved (tier ``auto``), still audited.
    tolerance: CurrencyAmounts = Field(default_factory=dict)
    #: ... and written off with reason ``small_balance`` once this many days past due, without collection effort.
    min_days_past_due: int | None = Field(180, ge=0)


class Partial(_Strict):
    #: Write off the open balance of a partly paid invoice (amount < invoice amount)?
    allowed: bool = True
    #: Same question for settlement remainders (partial by nature); on by default.
    settlements: bool = True


class RouteDays(_Strict):
    enabled: bool = True
    min_days_past_due: int = Field(0, ge=0)


class ParentChild(_Strict):
    #: Child-account invoices are written off for their full invoice amount only, never partially.
    child_full_only: bool = True
    #: No write-off of a child invoice whose balance went to the parent if the parent paid any part of it.
    exclude_if_parent_paid_transferred: bool = True


class Rules(_Strict):
    """The rule set that applies to one (entity, segment); every field has the documented default."""

    charge_off_days: int | None = Field(120, ge=0)
    writeoff_days: int = Field(365, ge=0)
    effort: Effort = Effort()
    exclusions: Exclusions = Exclusions()
    small_balance: SmallBalance = SmallBalance()
    partial: Partial = Partial()
    bankruptcy: RouteDays = RouteDays()
    dissolved: RouteDays = RouteDays(min_days_past_due=90)
    dispute_lost: RouteDays = RouteDays()
    settlement: RouteDays = RouteDays()
    #: Days past due after which the claim is time-barred (statute of limitations); null disables the rule.
    statute_days: int | None = Field(None, ge=1)
    parent_child: ParentChild = ParentChild()
    #: A write-off that was reversed puts its invoice on hold: it is not proposed again until a person clears it
    #: (``python -m writeoffs clear-reversal``) or, when set, this many days after the reversal's posting date.
    reversal_cooling_days: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _thresholds(self) -> Rules:
        if self.charge_off_days is not None and self.charge_off_days > self.writeoff_days:
            raise ValueError(
                f"charge_off_days ({self.charge_off_days}) must not exceed writeoff_days ({self.writeoff_days}): "
                "charge-off is the earlier declaration"
            )
        return self


class RestrictionSpec(_Strict):
    """A narrower limit inside a tier for exactly one reason, customer segment or user."""

    reason: Reason | None = None
    segment: str | None = Field(None, min_length=1, max_length=32)
    user: str | None = Field(None, min_length=1, max_length=64)
    limits: CurrencyAmounts = Field(default_factory=dict)
    batch_limits: CurrencyAmounts = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_selector(self) -> RestrictionSpec:
        chosen = [k for k in ("reason", "segment", "user") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"a restriction names exactly one of reason, segment or user (got {chosen or 'none'})")
        if not self.limits and not self.batch_limits:
            raise ValueError("a restriction needs limits or batch_limits")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("reason", "segment", "user") if getattr(self, k) is not None)

    @property
    def value(self) -> str:
        v = getattr(self, self.kind)
        return v.value if isinstance(v, Reason) else str(v)


class TierSpec(_Strict):
    name: str = Field(min_length=1, max_length=24)
    #: Largest single item per currency. Required for every currency of ``approval.currencies`` on every tier but
    #: the top one (which has none: unlimited, for those currencies only).
    limits: CurrencyAmounts = Field(default_factory=dict)
    #: Largest batch total per currency (the sum of what is approved together); same rule as ``limits``.
    batch_limits: CurrencyAmounts = Field(default_factory=dict)
    approvers: list[str] = Field(min_length=1)
    response_timeout_hours: float = Field(48, gt=0)
    on_timeout: Literal["expire", "escalate"] = "expire"
    #: Who may answer the confirm step (default: the approvers).
    confirmers: list[str] = Field(default_factory=list)
    #: Four eyes: a batch totalling more than this (per currency) must be confirmed by someone other than its
    #: approver. A currency not listed: four eyes at every amount.
    four_eyes_above: CurrencyAmounts = Field(default_factory=dict)
    #: Narrower limits per reason, customer segment or user; the most restrictive applicable limit wins.
    restrictions: list[RestrictionSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _not_auto(cls, v: str) -> str:
        if v == AUTO_TIER:
            raise ValueError(f"{AUTO_TIER!r} is reserved for small balances under the tolerance")
        return v


def _check_four_eyes_and_restrictions(t: TierSpec, currencies: set[str], *, is_top: bool) -> None:
    from writeoffs.identity import normalized

    named = [("four_eyes_above", t.four_eyes_above)]
    named += [(f"restrictions[{i}]", {**r.limits, **r.batch_limits}) for i, r in enumerate(t.restrictions)]
    for kind, amounts in named:
        extra = sorted(set(amounts) - currencies)
        if extra:
            raise ValueError(f"tier {t.name!r} {kind} name {', '.join(extra)}, not in approval.currencies")
    confirmers = {normalized(c) for c in (t.confirmers or t.approvers)}
    # Four eyes can apply unless every currency's threshold is at or above the tier's batch limit.
    can_apply = is_top or any(
        cur not in t.four_eyes_above or t.four_eyes_above[cur] < t.batch_limits.get(cur, Decimal(0))
        for cur in currencies
    )
    if can_apply:
        alone = sorted(a for a in t.approvers if not confirmers - {normalized(a)})
        if alone:
            raise ValueError(
                f"tier {t.name!r}: four eyes applies (four_eyes_above) but nobody but {', '.join(alone)} may confirm "
                f"what {', '.join(alone)} approved; add someone else to confirmers"
            )
    people = {normalized(p) for p in (*t.approvers, *(t.confirmers or ()))}
    for i, r in enumerate(t.restrictions):
        if r.user is not None and normalized(r.user) not in people:
            raise ValueError(
                f"tier {t.name!r} restrictions[{i}]: user {r.user!r} is not an approver or confirmer of the tier"
            )


class Approval(_Strict):
    #: The only currencies write-offs may be approved in. Anything else is refused by every tier (fail closed).
    #: Default: the currencies the lower tiers set limits for.
    currencies: list[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(default_factory=list)
    tiers: list[TierSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Approval:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        top, lower = self.tiers[-1], self.tiers[:-1]
        if top.limits or top.batch_limits:
            raise ValueError(
                f"the top tier ({names[-1]}) must have no limits: it approves any amount in approval.currencies"
            )
        if top.on_timeout == "escalate":
            raise ValueError(f"the top tier ({names[-1]}) cannot escalate: there is no higher tier")
        currencies = set(self.currencies) or {c for t in lower for c in (*t.limits, *t.batch_limits)}
        if not currencies:
            raise ValueError("approval.currencies is empty: name the currencies write-offs may be approved in")
        for t in lower:
            for kind in ("limits", "batch_limits"):
                have = getattr(t, kind)
                missing, extra = sorted(currencies - set(have)), sorted(set(have) - currencies)
                if missing:
                    raise ValueError(
                        f"tier {t.name!r} has no {kind} for {', '.join(missing)}: a currency without a limit is "
                        "refused, not unlimited; set one (or remove the currency from approval.currencies)"
                    )
                if extra:
                    raise ValueError(f"tier {t.name!r} {kind} name {', '.join(extra)}, not in approval.currencies")
            for cur in sorted(currencies):
                if t.batch_limits[cur] < t.limits[cur]:
                    raise ValueError(
                        f"tier {t.name!r}: batch limit {t.batch_limits[cur]} {cur} is below its item limit "
                        f"{t.limits[cur]} {cur}"
                    )
        for kind in ("limits", "batch_limits"):
            for cur in sorted(currencies):
                seen = [getattr(t, kind)[cur] for t in lower]
                if seen != sorted(seen):
                    raise ValueError(f"{kind} for {cur} must increase from lower to higher tiers, got {seen}")
        for t in self.tiers:
            _check_four_eyes_and_restrictions(t, currencies, is_top=t is top)
        return self

    @property
    def approval_currencies(self) -> tuple[str, ...]:
        lower = self.tiers[:-1]
        return tuple(sorted(set(self.currencies) or {c for t in lower for c in (*t.limits, *t.batch_limits)}))


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


@dataclass(frozen=True)
class Policy:
    """A validated, hashed policy. Cheap to query; rule sets per (entity, segment) are resolved once and cached."""

    model: PolicyFile
    text: str
    content_hash: str
    source: str = "<text>"
    _cache: dict[tuple[str, str], Rules] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def tiers(self) -> tuple[Tier, ...]:
        approval = self.model.approval
        top = dict.fromkeys(approval.approval_currencies)  # explicit None: unlimited, for these currencies only
        return tuple(
            Tier(
                name=t.name,
                limits=dict(t.limits) if t is not approval.tiers[-1] else top,
                approvers=tuple(t.approvers),
                response_timeout_hours=t.response_timeout_hours,
                on_timeout=t.on_timeout,
                batch_limits=dict(t.batch_limits) if t is not approval.tiers[-1] else top,
                confirmers=tuple(t.confirmers),
                four_eyes_above=dict(t.four_eyes_above),
                restrictions=tuple(
                    Restriction(r.kind, r.value, dict(r.limits), dict(r.batch_limits)) for r in t.restrictions
                ),
            )
            for t in approval.tiers
        )

    @property
    def auto_tier(self) -> Tier:
        """The small-balance tier (no human approver). Its limit per currency is the largest tolerance any entity or
        segment allows: posting refuses an ``auto`` batch holding anything above it (e.g. a tier flipped by raw
        SQL), while selection applies each invoice's own, possibly smaller, tolerance."""
        limits: dict[str, Decimal] = {}
        for entity in [*self.model.entities, "*"]:
            for segment in [*self.model.segments, "default"]:
                for cur, tol in self.rules_for(entity, segment).small_balance.tolerance.items():
                    limits[cur] = max(limits.get(cur, tol), tol)
        # Small balances are bounded item by item by the tolerance; an auto batch has no total cap (stated, not
        # implied: an explicit None per currency the tolerance names, and nothing for any other currency).
        return Tier(name=AUTO_TIER, limits=limits, approvers=(), batch_limits=dict.fromkeys(limits))

    @property
    def all_tiers(self) -> tuple[Tier, ...]:
        """``auto`` followed by the human tiers: what approval and posting check batches against."""
        return (self.auto_tier, *self.tiers)

    def reason_account(self, reason: str) -> str:
        try:
            return self.model.reasons[Reason(reason)]
        except ValueError:
            raise ConfigError(
                f"unknown write-off reason {reason!r}; the catalogue is {[r.value for r in Reason]}"
            ) from None

    def rules_for(self, entity: str, segment: str = "default") -> Rules:
        key = (entity, segment)
        if key not in self._cache:
            self._cache[key] = _resolve(self.model, entity, segment)
        return self._cache[key]

    def small_balance_tolerance(self, currency: str, entity: str, segment: str = "default") -> Decimal | None:
        return self.rules_for(entity, segment).small_balance.tolerance.get(check_currency(currency))

    def short_hash(self) -> str:
        return self.content_hash[:12]


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
    if path:
        return Path(path)
    env = os.environ.get(POLICY_PATH_ENV)
    return Path(env) if env else DEFAULT_POLICY_PATH


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate the policy file (argument, else ``$WRITEOFFS_POLICY_PATH``, else include/config)."""
    p = policy_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"policy {p}: cannot read: {exc.strerror or exc}") from None
    return parse_policy(text, source=str(p))
