"""Reconciliation's value objects and the helpers every check shares.

Value objects: :class:`Break` (one finding), :class:`Tolerances` (accepted difference per currency), :class:`Check`
(a registered check), :class:`CheckOutcome` and :class:`ReconResult` (what a run produced). Shared helpers: money
read by raw SQL at the ledger's 4 decimals (``_dec``, ``_sum``), the tolerance CTE and the sub-ledger-vs-GL query
(SQLAlchemy Core), capped document lists, the journal tables' short names, the posted lines of an account role and
row grouping.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CTE,
    Connection,
    Numeric,
    Select,
    String,
    and_,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    type_coerce,
    union,
    union_all,
)

from writeoffs.db.money import from_db_or_zero, to_db
from writeoffs.db.schema import MONEY, journal_entries, journal_lines
from writeoffs.errors import ConfigError
from writeoffs.money import check_currency, money_str, to_decimal
from writeoffs.report_store import StorePath, location

#: Documents kept per break (the message always states the full count): a break row must stay readable and a
#: systemic failure must not turn into a multi-megabyte JSON cell.
MAX_DOCUMENTS = 50
#: Finding rows a check reads at most where one break may stand for many (far more than a break lists, still
#: bounded); a count that reached it is stated as "N+" (:func:`_count`).
MAX_FINDINGS = MAX_DOCUMENTS * 20
_Q4 = Decimal("0.0001")


# --- value objects ----------------------------------------------------------------------------------------------


def _dec(conn: Connection, value: object) -> Decimal:
    """A money value read by raw SQL, at the ledger's 4 decimals (decoded by writeoffs.db.money; NULL is 0)."""
    return from_db_or_zero(conn, value).quantize(_Q4)


def _sum(conn: Connection, values: Iterable[object]) -> Decimal:
    return sum((_dec(conn, v) for v in values), Decimal(0).quantize(_Q4))


@dataclass(frozen=True, slots=True)
class Break:
    """One disagreement. ``difference`` is ``actual - expected`` (what the books show beyond what they should)."""

    check: str
    message: str
    entity: str | None = None
    currency: str | None = None
    account: str | None = None
    expected: Decimal | None = None
    actual: Decimal | None = None
    documents: tuple[Mapping[str, Any], ...] = ()

    @property
    def difference(self) -> Decimal | None:
        if self.expected is None or self.actual is None:
            return None
        return self.actual - self.expected

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (money as strings)."""

        def s(v: Decimal | None) -> str | None:
            return None if v is None else money_str(v)

        return {
            "check": self.check,
            "entity": self.entity,
            "currency": self.currency,
            "account": self.account,
            "expected": s(self.expected),
            "actual": s(self.actual),
            "difference": s(self.difference),
            "documents": [dict(d) for d in self.documents],
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Accepted absolute difference per currency; ``default`` for currencies not listed. Never negative."""

    default: Decimal = Decimal(0)
    per_currency: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        default = to_decimal(self.default)
        per = {check_currency(c): to_decimal(v) for c, v in dict(self.per_currency).items()}
        if default < 0 or any(v < 0 for v in per.values()):
            raise ConfigError("reconciliation tolerances must not be negative")
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "per_currency", per)

    def for_currency(self, currency: str | None) -> Decimal:
        return self.per_currency.get(currency or "", self.default)

    @classmethod
    def parse(cls, spec: str | Mapping[str, object] | None) -> Tolerances:
        """From ``"USD=0.01,EUR=0.01,default=0"`` or a mapping (Airflow params, JSON config)."""
        if spec is None or spec == "":
            return cls()
        if isinstance(spec, str):
            pairs: dict[str, object] = {}
            for part in spec.split(","):
                if not part.strip():
                    continue
                key, sep, value = part.partition("=")
                if not sep:
                    raise ConfigError(f"tolerance {part.strip()!r}: expected CUR=amount, e.g. USD=0.01")
                pairs[key.strip()] = value.strip()
            spec = pairs
        items = dict(spec)
        default = items.pop("default", items.pop("DEFAULT", "0"))
        try:
            # to_decimal refuses floats: a float tolerance is a config error, never silently binary noise.
            return cls(to_decimal(default), {k: to_decimal(v) for k, v in items.items()})
        except ConfigError:
            raise
        except Exception as exc:  # InputError subclasses and friends: re-raised as a config problem
            raise ConfigError(f"invalid reconciliation tolerance {spec!r}: {exc}") from exc

    def as_dict(self) -> dict[str, str]:
        return {"default": money_str(self.default), **{k: money_str(v) for k, v in sorted(self.per_currency.items())}}

    def tightened_by(self, requested: Tolerances) -> Tolerances:
        """``requested`` (a run's param) applied to these configured tolerances: it may only make them stricter.

        A param that would accept a larger difference than the configuration for any currency is refused: whoever
        may trigger a run must not be able to hide an amount break by widening the tolerance."""
        looser = [
            f"{cur} {money_str(v)} > {money_str(self.for_currency(cur))}"
            for cur, v in sorted(requested.per_currency.items())
            if v > self.for_currency(cur)
        ]
        if requested.default > self.default:
            looser.append(f"default {money_str(requested.default)} > {money_str(self.default)}")
        if looser:
            raise ConfigError(
                "a run may only tighten reconciliation tolerances, never loosen them "
                f"({', '.join(looser)}; configured: {WRITEOFFS_RECON_TOLERANCE_ENV})"
            )
        currencies = set(self.per_currency) | set(requested.per_currency)
        per = {c: min(self.for_currency(c), requested.for_currency(c)) for c in currencies}
        return Tolerances(min(self.default, requested.default), per)

    @classmethod
    def configured(cls) -> Tolerances:
        """The deployment's tolerances (``$WRITEOFFS_RECON_TOLERANCE``, syntax of :meth:`parse`); exact if unset."""
        return cls.parse(os.environ.get(WRITEOFFS_RECON_TOLERANCE_ENV, ""))


#: Environment variable holding the configured reconciliation tolerances (set by whoever deploys, not per run).
WRITEOFFS_RECON_TOLERANCE_ENV = "WRITEOFFS_RECON_TOLERANCE"


CheckFn = Callable[[Connection, date, Tolerances], list[Break]]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    title: str
    fn: CheckFn


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    check: Check
    breaks: tuple[Break, ...]
    seconds: float
    error: str | None = None  # the check itself could not run (reported as a break too)


@dataclass(frozen=True, slots=True)
class ReconResult:
    run_id: int
    run_key: str
    as_of: date
    outcomes: tuple[CheckOutcome, ...]
    tolerance: Tolerances
    report_path: StorePath | None
    seconds: float

    @property
    def breaks(self) -> list[Break]:
        return [b for o in self.outcomes for b in o.breaks]

    @property
    def break_count(self) -> int:
        return sum(len(o.breaks) for o in self.outcomes)

    def headline(self) -> str:
        if not self.break_count:
            return f"Reconciliation {self.as_of}: all {len(self.outcomes)} checks clean (run {self.run_key})"
        per = ", ".join(f"{o.check.name} {len(o.breaks)}" for o in self.outcomes if o.breaks)
        first = "; ".join(b.message for b in self.breaks[:3])
        return f"Reconciliation {self.as_of}: {self.break_count} break(s) ({per}). {first}" + (
            f" ... Report: {location(self.report_path)}" if self.report_path else ""
        )

    def summary(self) -> dict[str, Any]:
        """XCom/JSON-safe summary."""
        return {
            "run_id": self.run_id,
            "run_key": self.run_key,
            "as_of": self.as_of.isoformat(),
            "checks_run": len(self.outcomes),
            "break_count": self.break_count,
            "breaks_by_check": {o.check.name: len(o.breaks) for o in self.outcomes},
            "report_path": location(self.report_path) if self.report_path else None,
            "tolerance": self.tolerance.as_dict(),
            "seconds": round(self.seconds, 3),
            "headline": self.headline(),
        }


# --- SQL helpers ------------------------------------------------------------------------------------------------


#: SQL constants written as such (not bound): the zero of ``COALESCE(x, 0)``, the flags of ``CASE``.
_ZERO, _ONE = literal_column("0"), literal_column("1")


def _round4(expr: Any) -> Any:
    """``ROUND(expr, 4)``: money at the ledger's 4 decimals (SQLAlchemy Core)."""
    return func.round(expr, literal_column("4"))


def _tol(conn: Connection, tolerance: Tolerances) -> tuple[CTE, Any]:
    """A ``tol(currency, amount)`` CTE, so that tolerances are applied inside the set-wise query, not in Python, and
    the tolerance of a row joined to it (``COALESCE(tol.amount, <default>)``). SQLAlchemy Core.

    Tolerances are bound like the money they are compared with (``writeoffs.db.money.to_db``, encoded here so that
    an amount it refuses fails as it did), as ``CAST(:x AS NUMERIC(20, 4))``; read back, they decode as money."""

    def amount(value: Decimal | None) -> Any:
        bound = null() if value is None else literal(to_db(conn, value))
        return type_coerce(cast(bound, Numeric(20, 4)), MONEY)

    rows = [
        select(cast(literal(cur), String(3)).label("currency"), amount(amt).label("amount"))
        for cur, amt in sorted(tolerance.per_currency.items())
    ]
    if not rows:
        rows.append(
            select(cast(null(), String(3)).label("currency"), amount(None).label("amount")).where(_ONE == _ZERO)
        )
    tol = (rows[0] if len(rows) == 1 else union_all(*rows)).cte("tol")
    return tol, func.coalesce(tol.c.amount, amount(tolerance.default))


def _sub_vs_gl(
    tol: CTE, tol_amount: Any, sub: CTE, gl: CTE, more: Callable[[CTE], tuple[Sequence, Sequence]] | None = None
) -> Select:
    """The entities and currencies whose GL amount differs from the sub-ledger's beyond the currency's tolerance.

    ``tol`` and ``tol_amount`` come from :func:`_tol`; ``sub`` (``entity_code``, ``currency``, ``amount``, ``n``: the
    sub-ledger's) and ``gl`` (``entity_code``, ``currency``, ``account_code``, ``amount``: the GL's) are CTEs; a side
    without a row counts 0. Rows: ``entity_code``, ``currency``, ``account_code``, ``expected`` (the sub-ledger's),
    ``actual`` (the GL's), ``n``, then the columns ``more(k)`` returns with the (table, on) pairs to join to ``k``
    (the keys). SQLAlchemy Core."""
    k = union(select(sub.c.entity_code, sub.c.currency), select(gl.c.entity_code, gl.c.currency)).cte("k")
    columns, joins = more(k) if more is not None else ((), ())
    keys = k
    for table, on in joins:
        keys = keys.join(table, on)
    keys = (
        keys.outerjoin(sub, and_(sub.c.entity_code == k.c.entity_code, sub.c.currency == k.c.currency))
        .outerjoin(gl, and_(gl.c.entity_code == k.c.entity_code, gl.c.currency == k.c.currency))
        .outerjoin(tol, tol.c.currency == k.c.currency)
    )
    expected, actual = func.coalesce(sub.c.amount, _ZERO), func.coalesce(gl.c.amount, _ZERO)
    return (
        select(
            k.c.entity_code,
            k.c.currency,
            gl.c.account_code,
            expected.label("expected"),
            actual.label("actual"),
            func.coalesce(sub.c.n, _ZERO).label("n"),
            *columns,
        )
        .select_from(keys)
        .where(func.abs(_round4(actual - expected)) > tol_amount)
        .order_by(k.c.entity_code, k.c.currency)
    )


def _capped(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(docs[:MAX_DOCUMENTS])


def _more(n: int) -> str:
    return f" (first {MAX_DOCUMENTS} listed)" if n > MAX_DOCUMENTS else ""


def _count(n: int, found: int | None = None) -> str:
    """``n`` (of the ``found`` rows a query read; default ``n``) as a message states it: ``n+`` if the query stopped
    at :data:`MAX_FINDINGS` rows, so that there may be more."""
    return f"{n}{'+' if (n if found is None else found) >= MAX_FINDINGS else ''}"


def _listed_break(check: str, message: str, documents: list[dict[str, Any]], **fields: Any) -> Break:
    """A break that lists ``documents``: the first :data:`MAX_DOCUMENTS` of them, ``message`` saying so if there are
    more (the message itself states the full count)."""
    return Break(check=check, message=message + _more(len(documents)), documents=_capped(documents), **fields)


#: Short names of the journal tables, for the checks written in SQLAlchemy Core.
_JE = journal_entries
_JL = journal_lines


def _group(rows: Iterable[Any], key: Callable[[Any], tuple]) -> dict[tuple, list[Any]]:
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return groups
