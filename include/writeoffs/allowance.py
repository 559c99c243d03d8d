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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Date, bindparam, select, text

from writeoffs import audit, ledger, subledger
from writeoffs.accounting import entries, keys
from writeoffs.accounting.chart import resolve_accounts
from writeoffs.buckets import DEFAULT_BUCKETS
from writeoffs.db import bulk
from writeoffs.db.locks import ALLOWANCE_ESTIMATE, ledger_lock
from writeoffs.db.money import from_db_or_zero
from writeoffs.db.schema import allowance_estimates, journal_entries, legal_entities
from writeoffs.errors import ConfigError, LedgerError
from writeoffs.journal import JournalEntry
from writeoffs.money import money_str, round_money

#: Where the configuration lives unless ``WRITEOFFS_ALLOWANCE_PATH`` or an explicit path says otherwise.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "allowance.yaml"
CONFIG_PATH_ENV = "WRITEOFFS_ALLOWANCE_PATH"
ENTRY_PREFIX = keys.ALLOWANCE_PREFIX
SOURCE_TYPE = "allowance"
#: ``allowance_estimates.loss_rate`` is NUMERIC(9, 6): a fraction with 6 decimals = a percentage with 4.
RATE_DECIMALS = 6
_Q4 = Decimal("0.0001")
_HUNDRED = Decimal(100)


# --- configuration ----------------------------------------------------------------------------------------------


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
    if path:
        return Path(path)
    env = os.environ.get(CONFIG_PATH_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None) -> AllowanceConfig:
    """Load and validate the configuration (argument, else ``$WRITEOFFS_ALLOWANCE_PATH``, else include/config)."""
    p = config_path(path)
    try:
        content = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"allowance config {p}: cannot read: {exc.strerror or exc}") from None
    return parse_config(content, source=str(p))


def default_config() -> AllowanceConfig:
    """The default rates over the default buckets (used by tests and as documentation)."""
    pct = ("0.5%", "2%", "5%", "10%", "20%", "35%", "60%", "90%")
    return parse_config(
        {"version": "default", "loss_rates": {b.label: p for b, p in zip(DEFAULT_BUCKETS, pct, strict=True)}},
        source="<built-in defaults>",
    )


# --- result -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BucketEstimate:
    bucket: str
    open_balance: Decimal
    loss_rate: Decimal  # fraction
    required: Decimal


@dataclass(frozen=True, slots=True)
class PairResult:
    """One entity and currency: what is required, what the books held, what was posted."""

    entity: str
    currency: str
    functional_currency: str
    status: str  # posted | no_change | already
    required: Decimal
    buckets: tuple[BucketEstimate, ...]
    balance_before: Decimal | None = None  # GL allowance credit balance before this run (transaction currency)
    adjustment: Decimal | None = None  # + increase (Dr expense / Cr allowance), - release
    functional_required: Decimal | None = None
    functional_adjustment: Decimal | None = None
    functional_unadjusted: Decimal = Decimal(0)
    entry_key: str | None = None
    entry_id: int | None = None

    def summary(self) -> dict[str, Any]:
        def s(v: Decimal | None) -> str | None:
            return None if v is None else money_str(v)

        return {
            "entity": self.entity,
            "currency": self.currency,
            "functional_currency": self.functional_currency,
            "status": self.status,
            "required": s(self.required),
            "balance_before": s(self.balance_before),
            "adjustment": s(self.adjustment),
            "functional_required": s(self.functional_required),
            "functional_adjustment": s(self.functional_adjustment),
            "functional_unadjusted": s(self.functional_unadjusted),
            "entry_key": self.entry_key,
            "entry_id": self.entry_id,
            "buckets": {
                b.bucket: {
                    "open_balance": s(b.open_balance),
                    "loss_rate": format(b.loss_rate, "f"),
                    "required": s(b.required),
                }
                for b in self.buckets
            },
        }


@dataclass(frozen=True, slots=True)
class AllowanceResult:
    as_of: date
    config_version: str
    pairs: tuple[PairResult, ...]

    @property
    def posted(self) -> list[PairResult]:
        return [p for p in self.pairs if p.status == "posted"]

    def summary(self) -> dict[str, Any]:
        """XCom/JSON-safe (money as strings)."""
        return {
            "as_of": self.as_of.isoformat(),
            "config_version": self.config_version,
            "entries_posted": len(self.posted),
            "pairs": [p.summary() for p in self.pairs],
        }


def entry_key(entity: str, currency: str, as_of: date) -> str:
    return keys.allowance(entity, currency, as_of)


@dataclass(frozen=True, slots=True)
class _PeriodProbe:
    """What :func:`ledger.check_periods_open` needs, before any entry exists."""

    entity: str
    posting_date: date


# --- SQL helpers ------------------------------------------------------------------------------------------------


def _dec(value: object) -> Decimal:
    """A typed money value (already Decimal) at the ledger's 4 decimals; NULL is 0."""
    return Decimal(0).quantize(_Q4) if value is None else Decimal(str(value)).quantize(_Q4)


def _union_rows(prefix: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[object]]) -> tuple[str, dict]:
    """A portable inline table (``SELECT :p0 AS a, ... UNION ALL ...``); SQLite lacks ``VALUES ... AS t(a, b)``."""
    params: dict[str, object] = {}
    parts = []
    for n, row in enumerate(rows):
        cols = []
        for (name, sql_type), value in zip(columns, row, strict=True):
            key = f"{prefix}{n}_{name}"
            params[key] = value
            cols.append(f"CAST(:{key} AS {sql_type}) AS {name}")
        parts.append("SELECT " + ", ".join(cols))
    if not parts:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns)
        parts.append(f"SELECT {nulls} WHERE 1 = 0")
    return " UNION ALL ".join(parts), params


def _aged(conn: Connection, as_of: date) -> str:
    """The invoices' aging as of ``as_of`` from movements (one home: writeoffs.subledger), as an SQL subquery."""
    basis, buckets = subledger.aging_spec(conn, as_of)
    return f"({subledger.aged_invoices_sql(conn.dialect.name, basis=basis, buckets=buckets)})"


def _money_sum(dialect: str, value: object) -> Decimal:
    return from_db_or_zero(dialect, value).quantize(_Q4)


# --- the estimate -----------------------------------------------------------------------------------------------


def estimate_allowance(
    conn: Connection,
    as_of: date,
    *,
    config: AllowanceConfig,
    actor: str,
    entities: Sequence[str] | None = None,
) -> AllowanceResult:
    """Estimate and post in the caller's transaction (see the module docstring). Idempotent per date."""
    ledger_lock(conn, ALLOWANCE_ESTIMATE)
    if conn.dialect.name == "postgresql":
        bulk.set_local_work_mem(conn)  # the aging from movements hashes per-invoice sums: in memory
    q = select(legal_entities.c.code, legal_entities.c.functional_currency).where(
        legal_entities.c.writeoff_method == "allowance"
    )
    if entities:
        q = q.where(legal_entities.c.code.in_(list(entities)))
    functional = dict(conn.execute(q.order_by(legal_entities.c.code)).all())
    if not functional:
        return AllowanceResult(as_of, config.version, ())
    rates = {e: config.rates_for(e) for e in functional}
    _check_rates_cover_aging(conn, as_of, rates, config)

    pairs = _scope(conn, as_of, sorted(functional))
    done = _done_pairs(conn, as_of, pairs)
    todo = [p for p in pairs if p not in done]
    if todo:
        ledger.check_periods_open(conn, [_PeriodProbe(e, as_of) for e in sorted({e for e, _ in todo})])
        _refuse_out_of_order(conn, as_of, todo)
        _store_estimates(conn, as_of, todo, rates)
    stored = _stored(conn, as_of, pairs)
    required_f = _functional_required(conn, as_of, todo, rates, functional)
    balances = _allowance_balances(conn, as_of, todo)

    results: list[PairResult] = []
    entries: list[JournalEntry] = []
    for entity, cur in pairs:
        buckets = stored.get((entity, cur), ())
        required = sum((b.required for b in buckets), Decimal(0))
        key = entry_key(entity, cur, as_of)
        if (entity, cur) in done:
            results.append(
                PairResult(
                    entity,
                    cur,
                    functional[entity],
                    "already",
                    required,
                    buckets,
                    entry_key=key,
                    entry_id=done[(entity, cur)],
                )
            )
            continue
        bal_t, bal_f = balances.get((entity, cur), (Decimal(0), Decimal(0)))
        req_f = required_f.get((entity, cur), Decimal(0))
        dt = round_money(required - bal_t, cur)
        df = round_money(req_f - bal_f, functional[entity])
        entry, unadjusted = _adjustment_entry(
            conn, key, entity, cur, functional[entity], as_of, dt, df, config, required, bal_t
        )
        if entry is not None:
            entries.append(entry)
        results.append(
            PairResult(
                entity,
                cur,
                functional[entity],
                "posted" if entry is not None else "no_change",
                required,
                buckets,
                balance_before=bal_t,
                adjustment=dt,
                functional_required=req_f,
                functional_adjustment=df - unadjusted,
                functional_unadjusted=unadjusted,
                entry_key=key if entry is not None else None,
            )
        )
    ids: dict[str, int] = {}
    if entries:
        res = ledger.post_entries(conn, entries, created_by=actor)
        ids = {**res.posted, **res.already}
    results = [
        r if r.status != "posted" else _with_id(r, ids[r.entry_key])  # type: ignore[index]
        for r in results
    ]
    result = AllowanceResult(as_of, config.version, tuple(results))
    if todo:
        audit.append(
            conn,
            actor=actor,
            action="allowance.estimate",
            object_type="allowance_estimate",
            object_id=as_of.isoformat(),
            details={
                "config_version": config.version,
                "config_hash": config.content_hash,
                "config_source": config.source,
                "pairs": [r.summary() for r in results if (r.entity, r.currency) in set(todo)],
            },
        )
    return result


def _with_id(r: PairResult, entry_id: int) -> PairResult:
    return replace(r, entry_id=entry_id)


def _check_rates_cover_aging(
    conn: Connection, as_of: date, rates: Mapping[str, Mapping[str, Decimal]], config: AllowanceConfig
) -> None:
    rows = conn.execute(
        text(f"SELECT DISTINCT s.entity_code, s.bucket FROM {_aged(conn, as_of)} s").bindparams(
            bindparam("d", type_=Date)
        ),
        {"d": as_of},
    ).all()
    missing = sorted((e, b) for e, b in rows if e in rates and b not in rates[e])
    if missing:
        detail = ", ".join(f"{e}: {b!r}" for e, b in missing)
        raise ConfigError(
            f"allowance config {config.source}: loss_rates has no rate for aging bucket(s) holding open balances "
            f"on {as_of} ({detail})"
        )


def _scope(conn: Connection, as_of: date, entities: Sequence[str]) -> list[tuple[str, str]]:
    """(entity, currency) pairs to estimate: open AR as of the date, or a non-zero allowance balance to release."""
    ent_sql = ", ".join(f":e{n}" for n in range(len(entities)))
    params: dict[str, object] = {f"e{n}": e for n, e in enumerate(entities)} | {"d": as_of}
    rows = conn.execute(
        text(
            f"""
            SELECT s.entity_code, s.currency FROM {_aged(conn, as_of)} s WHERE s.entity_code IN ({ent_sql})
            UNION
            SELECT l.entity_code, l.currency
            FROM journal_lines l
            JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted' AND e.posting_date <= :d
            JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'allowance'
            WHERE l.entity_code IN ({ent_sql})
            GROUP BY l.entity_code, l.currency
            HAVING ROUND(SUM(l.credit - l.debit), 4) <> 0
                OR ROUND(SUM(l.functional_credit - l.functional_debit), 4) <> 0
            """
        ).bindparams(bindparam("d", type_=Date)),
        params,
    ).all()
    return sorted({(r[0], r[1]) for r in rows})


def _done_pairs(conn: Connection, as_of: date, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
    """Pairs already estimated for ``as_of`` (stored estimate rows or a posted entry) -> their entry id, if any."""
    if not pairs:
        return {}
    keys = {entry_key(e, c, as_of): (e, c) for e, c in pairs}
    entries = dict(
        conn.execute(
            select(journal_entries.c.idempotency_key, journal_entries.c.id).where(
                journal_entries.c.idempotency_key.in_(list(keys))
            )
        ).all()
    )
    stored = {
        (r.entity_code, r.currency)
        for r in conn.execute(
            select(allowance_estimates.c.entity_code, allowance_estimates.c.currency)
            .where(allowance_estimates.c.as_of_date == as_of)
            .distinct()
        )
    }
    out: dict[tuple[str, str], int | None] = {}
    for key, pair in keys.items():
        if key in entries or pair in stored:
            out[pair] = entries.get(key)
    return out


def _refuse_out_of_order(conn: Connection, as_of: date, todo: Sequence[tuple[str, str]]) -> None:
    later = conn.execute(
        select(journal_entries.c.entity_code, journal_entries.c.idempotency_key, journal_entries.c.posting_date).where(
            journal_entries.c.source_type == SOURCE_TYPE,
            journal_entries.c.posting_date > as_of,
            journal_entries.c.idempotency_key.like(f"{ENTRY_PREFIX}%"),
            journal_entries.c.entity_code.in_(sorted({e for e, _ in todo})),
        )
    ).all()
    wanted = {f"{ENTRY_PREFIX}{e}:{c}:" for e, c in todo}
    clash = sorted(r.idempotency_key for r in later if r.idempotency_key.rsplit(":", 1)[0] + ":" in wanted)
    if clash:
        raise LedgerError(
            f"allowance estimate for {as_of} refused: a later estimate is already booked ({', '.join(clash[:5])}); "
            "estimates are booked in date order"
        )


def _rates_table(rates: Mapping[str, Mapping[str, Decimal]], entities: Iterable[str]) -> tuple[str, dict]:
    rows = [(e, b, r) for e in sorted(set(entities)) for b, r in sorted(rates[e].items())]
    return _union_rows(
        "r",
        (("entity_code", "VARCHAR(16)"), ("bucket", "VARCHAR(16)"), ("rate", "NUMERIC(9, 6)")),
        [(e, b, str(r)) for e, b, r in rows],
    )


def _store_estimates(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]], rates: Mapping[str, Mapping[str, Decimal]]
) -> None:
    """One row per (entity, currency, configured bucket), zeros included; ``ON CONFLICT DO NOTHING``."""
    dialect = conn.dialect.name
    rates_sql, params = _rates_table(rates, (e for e, _ in todo))
    pairs_sql, p2 = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params |= p2 | {"d": as_of}
    select_sql = f"""
        WITH rt AS ({rates_sql}), pr AS ({pairs_sql}),
        ag AS (SELECT s.entity_code, s.currency, s.bucket, SUM(s.open_balance) AS open_sum
               FROM {_aged(conn, as_of)} s GROUP BY s.entity_code, s.currency, s.bucket)
        SELECT pr.entity_code, pr.currency, rt.bucket, rt.rate, c.minor_unit, ag.open_sum
        FROM pr
        JOIN rt ON rt.entity_code = pr.entity_code
        JOIN currencies c ON c.code = pr.currency
        LEFT JOIN ag ON ag.entity_code = pr.entity_code AND ag.currency = pr.currency AND ag.bucket = rt.bucket
    """
    if dialect == "postgresql":
        # Exact NUMERIC; ROUND on numeric rounds half away from zero = half-up for these non-negative amounts.
        conn.execute(
            text(
                f"""
                INSERT INTO allowance_estimates
                    (as_of_date, entity_code, currency, bucket, open_balance, loss_rate, required_allowance)
                SELECT :d, x.entity_code, x.currency, x.bucket, COALESCE(x.open_sum, 0), x.rate,
                       ROUND(COALESCE(x.open_sum, 0) * x.rate, x.minor_unit)
                FROM ({select_sql}) x
                ON CONFLICT (as_of_date, entity_code, currency, bucket) DO NOTHING
                """
            ).bindparams(bindparam("d", type_=Date)),
            params,
        )
        return
    rows = conn.execute(text(select_sql).bindparams(bindparam("d", type_=Date)), params).all()
    out = []
    for r in rows:
        open_sum = _money_sum(dialect, r.open_sum)
        rate = Decimal(str(r.rate)).quantize(Decimal(1).scaleb(-RATE_DECIMALS))
        out.append(
            {
                "as_of_date": as_of,
                "entity_code": r.entity_code,
                "currency": r.currency,
                "bucket": r.bucket,
                "open_balance": open_sum,
                "loss_rate": rate,
                "required_allowance": round_money(open_sum * rate, r.currency),
            }
        )
    ledger.upsert_ignore(conn, allowance_estimates, out, ["as_of_date", "entity_code", "currency", "bucket"])


def _stored(
    conn: Connection, as_of: date, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[BucketEstimate, ...]]:
    order = {b.label: n for n, b in enumerate(DEFAULT_BUCKETS)}
    a = allowance_estimates.c
    grouped: dict[tuple[str, str], list[BucketEstimate]] = defaultdict(list)
    wanted = set(pairs)
    for r in conn.execute(select(allowance_estimates).where(a.as_of_date == as_of)):
        if (r.entity_code, r.currency) in wanted:
            grouped[(r.entity_code, r.currency)].append(
                BucketEstimate(
                    r.bucket,
                    _dec(r.open_balance),
                    Decimal(str(r.loss_rate)).quantize(Decimal(1).scaleb(-RATE_DECIMALS)),
                    round_money(_dec(r.required_allowance), r.currency),
                )
            )
    return {k: tuple(sorted(v, key=lambda b: (order.get(b.bucket, 99), b.bucket))) for k, v in grouped.items()}


def _functional_required(
    conn: Connection,
    as_of: date,
    todo: Sequence[tuple[str, str]],
    rates: Mapping[str, Mapping[str, Decimal]],
    functional: Mapping[str, str],
) -> dict[tuple[str, str], Decimal]:
    """Per pair: sum over buckets of ROUND(sum(open x booked fx_rate) x rate, functional minor unit).

    Grouped by booked rate so that the sums stay exact on both databases (a handful of distinct rates per bucket);
    the multiplication by the rate happens in Decimal.
    """
    if not todo:
        return {}
    dialect = conn.dialect.name
    pairs_sql, params = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params["d"] = as_of
    rows = conn.execute(
        text(
            f"""
            WITH pr AS ({pairs_sql})
            SELECT s.entity_code, s.currency, s.bucket, i.fx_rate, SUM(s.open_balance) AS open_sum
            FROM {_aged(conn, as_of)} s
            JOIN pr ON pr.entity_code = s.entity_code AND pr.currency = s.currency
            JOIN invoices i ON i.id = s.invoice_id
            GROUP BY s.entity_code, s.currency, s.bucket, i.fx_rate
            """
        ).bindparams(bindparam("d", type_=Date)),
        params,
    ).all()
    per_bucket: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        fx = Decimal(str(r.fx_rate)).quantize(Decimal("0.0000000001"))
        per_bucket[(r.entity_code, r.currency, r.bucket)] += _money_sum(dialect, r.open_sum) * fx
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (entity, cur, bucket), amount in per_bucket.items():
        rate = rates[entity].get(bucket, Decimal(0))
        out[(entity, cur)] += round_money(amount * rate, functional[entity])
    return dict(out)


def _allowance_balances(
    conn: Connection, as_of: date, todo: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """GL allowance credit balance (credit - debit) up to ``as_of``, per pair: (transaction, functional)."""
    if not todo:
        return {}
    pairs_sql, params = _union_rows("p", (("entity_code", "VARCHAR(16)"), ("currency", "VARCHAR(3)")), list(todo))
    params["d"] = as_of
    rows = conn.execute(
        text(
            f"""
            WITH pr AS ({pairs_sql})
            SELECT l.entity_code, l.currency, SUM(l.credit - l.debit) AS bal,
                   SUM(l.functional_credit - l.functional_debit) AS fbal
            FROM journal_lines l
            JOIN pr ON pr.entity_code = l.entity_code AND pr.currency = l.currency
            JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted' AND e.posting_date <= :d
            JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'allowance'
            GROUP BY l.entity_code, l.currency
            """
        ).bindparams(bindparam("d", type_=Date)),
        params,
    ).all()
    return {
        (r.entity_code, r.currency): (_money_sum(conn.dialect.name, r.bal), _money_sum(conn.dialect.name, r.fbal))
        for r in rows
    }


def _adjustment_entry(
    conn: Connection,
    key: str,
    entity: str,
    currency: str,
    functional_currency: str,
    as_of: date,
    dt: Decimal,
    df: Decimal,
    config: AllowanceConfig,
    required: Decimal,
    balance: Decimal,
) -> tuple[JournalEntry | None, Decimal]:
    """The entry bringing the allowance to ``required`` (None when nothing moves) and the functional remainder."""
    if dt == 0:
        return None, df  # nothing to post in transaction currency; a pure FX difference is not remeasured here
    same_side = (df > 0) == (dt > 0) or df == 0
    fam = abs(df) if same_side else Decimal(0)
    unadjusted = Decimal(0) if same_side else df
    direction = "increase" if dt > 0 else "release"
    entry = entries.allowance_adjustment(
        resolve_accounts(conn, entity),
        key=key,
        posting_date=as_of,
        currency=currency,
        change=dt,
        functional_change=fam,
        description=(
            f"Allowance for doubtful accounts {entity} {currency} as of {as_of}: required {money_str(required)}, "
            f"balance {money_str(balance)}, {direction} {money_str(abs(dt))} (loss rates {config.version})"
        ),
        memo=f"allowance estimate {as_of.isoformat()}",
        source_type=SOURCE_TYPE,
        source_id=f"{entity}:{currency}:{as_of.isoformat()}",
        policy_version=config.version[:32],
    )
    return entry, unadjusted


def run_allowance(engine: Any, as_of: date, *, config: AllowanceConfig | None = None, actor: str) -> AllowanceResult:
    """One transaction: estimate and post for every allowance-method entity (the DAG and CLI entry point)."""
    cfg = config or load_config()
    with engine.begin() as conn:
        return estimate_allowance(conn, as_of, config=cfg, actor=actor)


def has_allowance_entities(conn: Connection) -> bool:
    return (
        conn.execute(
            select(legal_entities.c.code).where(legal_entities.c.writeoff_method == "allowance").limit(1)
        ).first()
        is not None
    )


__all__ = [
    "AllowanceConfig",
    "AllowanceResult",
    "PairResult",
    "default_config",
    "entry_key",
    "estimate_allowance",
    "has_allowance_entities",
    "load_config",
    "parse_config",
    "parse_rate",
    "run_allowance",
]
