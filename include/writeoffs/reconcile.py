"""Reconciliation: does the sub-ledger agree with the general ledger, and did every approval end in the books?

Each check is a plain function ``check(conn, as_of, tolerance) -> list[Break]`` registered in :data:`CHECKS`. A
check never raises on a finding and never stops at the first one: it returns every break it sees, grouped so that
one root cause yields one break per (entity, currency, kind) with the affected documents attached. Checks are
set-wise SQL (aggregates and anti-joins on indexed keys); Python only shapes the offending rows, so the run costs
the same few scans whether the ledger holds a thousand invoices or a million.

All checks of a run read one consistent snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite): a posting committing halfway through a run must not show up as a break in one check and not in another.

What is compared is the *current* state of both ledgers; ``as_of`` is the business date the run is filed under.
A point-in-time comparison of a past date (sub-ledger from its movements vs GL lines dated up to then) is
:func:`writeoffs.subledger.compare_with_gl` (``python -m writeoffs subledger-vs-gl --as-of D``); the
``movements`` check here verifies that the movements still add up to every invoice's current balance.

Amounts are compared per currency with a tolerance (default 0, i.e. exact to the 4th decimal). Structural checks
(an entry that does not balance, a posting without its journal entry, two active write-off entries) ignore the
tolerance: they are wrong at any size.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)

from writeoffs import audit
from writeoffs.accounting import keys
from writeoffs.audit_anchor import check_audit_chain
from writeoffs.db import stats
from writeoffs.db.money import from_db_or_zero, to_db
from writeoffs.db.schema import (
    MONEY,
    accounts,
    allowance_estimates,
    customers,
    holds,
    invoices,
    journal_entries,
    journal_lines,
    payment_allocations,
    payments,
    recon_breaks,
    recon_runs,
    recoveries,
    writeoffs,
)
from writeoffs.errors import ConfigError
from writeoffs.money import check_currency, money_str, to_decimal
from writeoffs.period_seal import check_period_seals
from writeoffs.recon_lines import check_approval_digests, check_writeoff_lines
from writeoffs.report_store import StorePath, location
from writeoffs.safe_text import md

log = logging.getLogger(__name__)

#: Documents kept per break (the message always states the full count): a break row must stay readable and a
#: systemic failure must not turn into a multi-megabyte JSON cell.
MAX_DOCUMENTS = 50
#: Batch statuses in which posting has finished, so every item must be accounted for.
POSTED_BATCH_STATUSES: tuple[str, ...] = ("posted", "partially_posted")
#: Write-off item statuses that account for an item of a posted batch (``skipped`` additionally needs a reason;
#: ``reversed`` was posted, then undone by a reversal entry).
SETTLED_ITEM_STATUSES: tuple[str, ...] = ("posted", "skipped", "excluded", "reversed")
#: Journal sources allowed to move the allowance account (plus reversals of entries of these sources).
ALLOWANCE_SOURCES: tuple[str, ...] = ("allowance", "writeoff", "recovery")
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


# --- SQL helpers ------------------------------------------------------------------------------------------------


def _tol_cte(conn: Connection, tolerance: Tolerances) -> tuple[str, dict[str, object]]:
    """A ``tol(currency, amount)`` CTE so that tolerances are applied inside the set-wise query, not in Python.

    Tolerances are bound like the money they are compared with (``writeoffs.db.money.to_db``)."""
    params: dict[str, object] = {"default_tol": to_db(conn, tolerance.default)}
    rows = []
    for n, (cur, amt) in enumerate(sorted(tolerance.per_currency.items())):
        rows.append(f"SELECT CAST(:tc{n} AS VARCHAR(3)) AS currency, CAST(:ta{n} AS NUMERIC(20, 4)) AS amount")
        params[f"tc{n}"] = cur
        params[f"ta{n}"] = to_db(conn, amt)
    if not rows:
        rows.append("SELECT CAST(NULL AS VARCHAR(3)) AS currency, CAST(NULL AS NUMERIC(20, 4)) AS amount WHERE 1 = 0")
    return "tol AS (" + " UNION ALL ".join(rows) + ")", params


#: Tolerance for currency column ``col``: joined CTE row or the default.
def _tol_of(alias: str) -> str:
    return f"COALESCE({alias}.amount, CAST(:default_tol AS NUMERIC(20, 4)))"


def _in_list(name: str, values: Sequence[object]) -> tuple[str, dict[str, object]]:
    keys = {f"{name}{n}": v for n, v in enumerate(values)}
    return ", ".join(f":{k}" for k in keys), keys


def _capped(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(docs[:MAX_DOCUMENTS])


def _more(n: int) -> str:
    return f" (first {MAX_DOCUMENTS} listed)" if n > MAX_DOCUMENTS else ""


_POSTED_AR_LINES = """
    SELECT l.entity_code, l.currency, l.account_code, l.invoice_id, l.debit, l.credit
    FROM journal_lines l
    JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted'
    JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'ar_control'
"""


# --- checks -----------------------------------------------------------------------------------------------------


def check_subledger_vs_gl(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Open AR per entity and currency (sum of invoice open balances) = posted balance of the AR control account."""
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql},
            sub AS (SELECT entity_code, currency, SUM(open_balance) AS amount, COUNT(*) AS n
                    FROM invoices GROUP BY entity_code, currency),
            gl AS (SELECT entity_code, currency, MIN(account_code) AS account_code,
                          SUM(debit - credit) AS amount,
                          SUM(CASE WHEN invoice_id IS NULL THEN 1 ELSE 0 END) AS untagged
                   FROM ({_POSTED_AR_LINES}) ar GROUP BY entity_code, currency),
            k AS (SELECT entity_code, currency FROM sub UNION SELECT entity_code, currency FROM gl)
            SELECT k.entity_code, k.currency, gl.account_code, COALESCE(sub.amount, 0) AS expected,
                   COALESCE(gl.amount, 0) AS actual, COALESCE(sub.n, 0) AS n, COALESCE(gl.untagged, 0) AS untagged,
                   (SELECT a.code FROM accounts a WHERE a.entity_code = k.entity_code AND a.role = 'ar_control')
                       AS ar_account
            FROM k
            LEFT JOIN sub ON sub.entity_code = k.entity_code AND sub.currency = k.currency
            LEFT JOIN gl ON gl.entity_code = k.entity_code AND gl.currency = k.currency
            LEFT JOIN tol ON tol.currency = k.currency
            WHERE ABS(ROUND(COALESCE(gl.amount, 0) - COALESCE(sub.amount, 0), 4)) > {_tol_of("tol")}
            ORDER BY k.entity_code, k.currency
            """
        ),
        params,
    ).all()
    out = []
    for r in rows:
        docs: list[dict[str, Any]] = []
        hint = ""
        if r.untagged == 0:
            # Every AR line names its invoice: the difference can be pinned to invoices, so list them.
            docs = [
                {
                    "type": "invoice",
                    "id": d.id,
                    "ref": d.invoice_ref,
                    "open_balance": money_str(_dec(conn, d.expected)),
                    "gl_balance": money_str(_dec(conn, d.actual)),
                }
                for d in conn.execute(
                    text(
                        f"""
                        SELECT i.id, i.invoice_ref, i.open_balance AS expected, COALESCE(g.amount, 0) AS actual
                        FROM invoices i
                        LEFT JOIN (SELECT invoice_id, SUM(debit - credit) AS amount FROM ({_POSTED_AR_LINES}) ar
                                   WHERE entity_code = :e AND currency = :c GROUP BY invoice_id) g
                               ON g.invoice_id = i.id
                        WHERE i.entity_code = :e AND i.currency = :c
                          AND ROUND(i.open_balance - COALESCE(g.amount, 0), 4) <> 0
                        ORDER BY i.id LIMIT {MAX_DOCUMENTS}
                        """
                    ),
                    {"e": r.entity_code, "c": r.currency},
                )
            ]
        else:
            hint = f"; {r.untagged} AR lines carry no invoice, so the difference cannot be pinned to invoices"
        expected, actual = _dec(conn, r.expected), _dec(conn, r.actual)
        out.append(
            Break(
                check="subledger_vs_gl",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code or r.ar_account,
                expected=expected,
                actual=actual,
                documents=tuple(docs),
                message=(
                    f"open AR {money_str(expected)} {r.currency} on {r.n} invoices of {r.entity_code} differs from "
                    f"the GL AR control balance {money_str(actual)} by {money_str(actual - expected)}{hint}"
                ),
            )
        )
    return out


def check_approved_vs_posted(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every item of a posted batch is posted (with its entry), skipped with a reason, or excluded.

    Also, anywhere: an item marked ``posted`` must point at a posted write-off journal entry that no posted entry
    reverses (a reversed write-off flipped back to 'posted' is not in the books), and a skipped item must say
    why. One break per batch (items without a batch: per entity and currency), amounts in the batch currency:
    expected = items approved for posting, actual = items posted with an entry + skipped with a reason.
    """
    statuses, params = _in_list("bs", POSTED_BATCH_STATUSES)
    settled, p2 = _in_list("ss", SETTLED_ITEM_STATUSES)
    params.update(p2)
    rows = conn.execute(
        text(
            f"""
            SELECT w.id, w.batch_id, b.batch_key, b.status AS batch_status, i.entity_code, w.currency, w.amount,
                   w.status, w.skip_reason, w.journal_entry_id, e.status AS entry_status,
                   e.source_type, i.invoice_ref
            FROM writeoffs w
            JOIN invoices i ON i.id = w.invoice_id
            LEFT JOIN writeoff_batches b ON b.id = w.batch_id
            LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
            WHERE (w.status IN ('posted', 'reversed')
                   AND (e.id IS NULL OR e.status <> 'posted' OR e.source_type <> 'writeoff'))
               OR (w.status = 'posted' AND EXISTS (SELECT 1 FROM journal_entries rv
                                                  WHERE rv.reverses_entry_id = w.journal_entry_id
                                                    AND rv.status = 'posted'))
               OR (w.status = 'skipped' AND (w.skip_reason IS NULL OR TRIM(w.skip_reason) = ''))
               OR (b.status IN ({statuses}) AND w.status NOT IN ({settled}))
            ORDER BY w.batch_id, w.id
            """
        ),
        params,
    ).all()
    if not rows:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.batch_id, r.entity_code, r.currency)].append(r)
    batch_ids = sorted({k[0] for k in groups if k[0] is not None})
    totals: dict[int, Any] = {}
    if batch_ids:
        ids, p3 = _in_list("b", batch_ids)
        totals = {
            t.batch_id: t
            for t in conn.execute(
                text(
                    f"""
                    SELECT w.batch_id,
                           SUM(CASE WHEN w.status <> 'excluded' THEN w.amount ELSE 0 END) AS expected,
                           SUM(CASE WHEN (w.status IN ('posted', 'reversed') AND e.status = 'posted'
                                          AND e.source_type = 'writeoff')
                                      OR (w.status = 'skipped' AND TRIM(COALESCE(w.skip_reason, '')) <> '')
                                    THEN w.amount ELSE 0 END) AS actual,
                           COUNT(*) AS n
                    FROM writeoffs w LEFT JOIN journal_entries e ON e.id = w.journal_entry_id
                    WHERE w.batch_id IN ({ids}) GROUP BY w.batch_id
                    """
                ),
                p3,
            )
        }
    out = []
    for (batch_id, entity, currency), items in groups.items():
        docs = []
        kinds: set[str] = set()
        for r in items:
            if r.status in ("posted", "reversed"):
                if r.journal_entry_id is None or r.entry_status is None:
                    kind, problem = "posted without entry", "marked posted but has no journal entry"
                elif r.status == "posted" and r.entry_status == "posted" and r.source_type == "writeoff":
                    kind = "entry reversed"
                    problem = f"marked posted but its journal entry {r.journal_entry_id} has been reversed"
                else:
                    kind = "wrong entry"
                    problem = (
                        f"journal entry {r.journal_entry_id} is {r.entry_status}/{r.source_type}, "
                        "not a posted write-off entry"
                    )
            elif r.status == "skipped":
                kind = problem = "skipped without a reason"
            else:
                kind, problem = "not posted", f"still {r.status!r} in a {r.batch_status} batch"
            kinds.add(kind)
            docs.append(
                {
                    "type": "writeoff",
                    "id": r.id,
                    "invoice_ref": r.invoice_ref,
                    "status": r.status,
                    "amount": money_str(_dec(conn, r.amount)),
                    "journal_entry_id": r.journal_entry_id,
                    "problem": problem,
                }
            )
        t = totals.get(batch_id)
        if t is not None:
            expected, actual = _dec(conn, t.expected), _dec(conn, t.actual)
            where = f"batch {items[0].batch_key} ({items[0].batch_status}, {t.n} items)"
        else:
            expected = _sum(conn, (r.amount for r in items))
            actual = _sum(conn, (r.amount for r in items if r.status == "skipped" and (r.skip_reason or "").strip()))
            where = "write-offs outside any batch"
        out.append(
            Break(
                check="approved_vs_posted",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{where}: {len(docs)} item(s) not accounted for ({', '.join(sorted(kinds))}); approved "
                    f"{money_str(expected)} vs posted+skipped {money_str(actual)} {currency}{_more(len(docs))}"
                ),
            )
        )
    return out


def check_entries_balanced(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every journal entry balances per transaction currency and per functional currency; posted ones have 2+ lines.

    No tolerance: the database refuses unbalanced entries, so any imbalance here means someone got around it.
    """
    rows = conn.execute(
        text(
            """
            SELECT x.entry_id, x.kind, x.currency, x.dr, x.cr, e.idempotency_key, e.entity_code, e.status,
                   e.source_type
            FROM (
                SELECT entry_id, 'transaction' AS kind, currency, SUM(debit) AS dr, SUM(credit) AS cr
                FROM journal_lines GROUP BY entry_id, currency
                HAVING ROUND(SUM(debit) - SUM(credit), 4) <> 0
                UNION ALL
                SELECT entry_id, 'functional' AS kind, functional_currency, SUM(functional_debit),
                       SUM(functional_credit)
                FROM journal_lines GROUP BY entry_id, functional_currency
                HAVING ROUND(SUM(functional_debit) - SUM(functional_credit), 4) <> 0
            ) x
            JOIN journal_entries e ON e.id = x.entry_id
            UNION ALL
            SELECT e.id, 'lines', NULL, NULL, NULL, e.idempotency_key, e.entity_code, e.status, e.source_type
            FROM journal_entries e
            WHERE e.status = 'posted' AND (SELECT COUNT(*) FROM journal_lines l WHERE l.entry_id = e.id) < 2
            ORDER BY 7, 3, 1
            """
        )
    ).all()
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.entity_code, r.kind, r.currency)].append(r)
    out = []
    for (entity, kind, currency), items in groups.items():
        docs = [
            {
                "type": "journal_entry",
                "id": r.entry_id,
                "key": r.idempotency_key,
                "status": r.status,
                "source_type": r.source_type,
                "debit": None if r.dr is None else money_str(_dec(conn, r.dr)),
                "credit": None if r.cr is None else money_str(_dec(conn, r.cr)),
            }
            for r in items
        ]
        if kind == "lines":
            out.append(
                Break(
                    check="entries_balanced",
                    entity=entity,
                    documents=_capped(docs),
                    message=f"{len(items)} posted journal entr(y/ies) of {entity} with fewer than two lines"
                    f"{_more(len(items))}",
                )
            )
            continue
        dr = _sum(conn, (r.dr for r in items))
        cr = _sum(conn, (r.cr for r in items))
        out.append(
            Break(
                check="entries_balanced",
                entity=entity,
                currency=currency,
                expected=dr,
                actual=cr,
                documents=_capped(docs),
                message=(
                    f"{len(items)} journal entr(y/ies) of {entity} do not balance in {kind} currency {currency}: "
                    f"debits {money_str(dr)}, credits {money_str(cr)}{_more(len(items))}"
                ),
            )
        )
    return out


_ACTIVE_WRITEOFF_ENTRIES = """
    SELECT e.id, e.idempotency_key FROM journal_entries e
    WHERE e.status = 'posted' AND e.source_type = 'writeoff'
      AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reverses_entry_id = e.id AND r.status = 'posted')
"""


def check_writeoff_entries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Each written-off invoice has one active write-off entry per posted write-off of it, crediting AR by the amount
    written off; its posted write-offs never exceed the invoice amount.

    Active = posted, ``source_type = 'writeoff'``, and not reversed by a posted entry. The entry is tied to the
    invoice by its lines' ``invoice_id``. Written off = ``written_off_amount > 0``, whatever the status says (a
    partial write-off leaves the invoice 'open'; cash after it may make it 'paid'). Two partial write-offs of one
    invoice are two ``writeoffs`` rows in status 'posted', each with its own entry: that is not a double posting;
    more active entries than posted rows (at least one) is. Conversely, an invoice not written off must have no
    active write-off entry.
    """
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql},
            active AS ({_ACTIVE_WRITEOFF_ENTRIES}),
            gl AS (
                SELECT l.invoice_id, COUNT(DISTINCT l.entry_id) AS n_entries,
                       SUM(CASE WHEN a.role = 'ar_control' THEN l.credit - l.debit ELSE 0 END) AS ar_credit
                FROM journal_lines l
                JOIN active ON active.id = l.entry_id
                JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code
                WHERE l.invoice_id IS NOT NULL
                GROUP BY l.invoice_id
            ),
            wo AS (
                SELECT invoice_id, COUNT(*) AS n_posted, SUM(amount) AS posted_total
                FROM writeoffs WHERE status = 'posted' GROUP BY invoice_id
            ),
            c AS (
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.status, i.written_off_amount, i.amount,
                       COALESCE(gl.n_entries, 0) AS n_entries, COALESCE(gl.ar_credit, 0) AS ar_credit,
                       COALESCE(wo.n_posted, 0) AS n_posted, COALESCE(wo.posted_total, 0) AS posted_total,
                       CASE WHEN i.written_off_amount > 0 THEN 1 ELSE 0 END AS written_off,
                       CASE WHEN ROUND(COALESCE(wo.posted_total, 0) - i.amount, 4) > 0 THEN 1 ELSE 0 END AS exceeds,
                       {_tol_of("tol")} AS tol
                FROM invoices i
                LEFT JOIN gl ON gl.invoice_id = i.id
                LEFT JOIN wo ON wo.invoice_id = i.id
                LEFT JOIN tol ON tol.currency = i.currency
                -- every finding needs one of these: skip the untouched invoices before any arithmetic
                WHERE i.written_off_amount > 0 OR gl.invoice_id IS NOT NULL OR wo.invoice_id IS NOT NULL
            )
            SELECT * FROM c
            WHERE (c.written_off = 1
                   AND (c.n_entries = 0
                        OR c.n_entries > CASE WHEN c.n_posted > 1 THEN c.n_posted ELSE 1 END
                        OR ABS(ROUND(c.ar_credit - c.written_off_amount, 4)) > c.tol))
               OR (c.written_off = 0 AND c.n_entries > 0)
               OR c.exceeds = 1
            ORDER BY c.entity_code, c.currency, c.id
            """
        ),
        params,
    ).all()
    if not rows:
        return []
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    listed = [r.id for r in rows if r.n_entries > 0][: MAX_DOCUMENTS * 4]
    if listed:
        ids, p2 = _in_list("inv", listed)
        for e in conn.execute(
            text(
                f"""
                SELECT DISTINCT l.invoice_id, active.id, active.idempotency_key
                FROM journal_lines l JOIN ({_ACTIVE_WRITEOFF_ENTRIES}) active ON active.id = l.entry_id
                WHERE l.invoice_id IN ({ids}) ORDER BY 1, 2
                """
            ),
            p2,
        ):
            entries[e.invoice_id].append({"id": e.id, "key": e.idempotency_key})

    def kinds(r) -> list[str]:
        found = ["over"] if r.exceeds else []
        if not r.written_off:
            return found + (["orphan"] if r.n_entries > 0 else [])
        if r.n_entries == 0:
            return [*found, "missing"]
        if r.n_entries > max(r.n_posted, 1):
            return [*found, "duplicate"]
        if abs(_dec(conn, r.ar_credit) - _dec(conn, r.written_off_amount)) > _dec(conn, r.tol):
            found.append("amount")
        return found

    texts = {
        "missing": "written off in the sub-ledger without an active write-off entry",
        "duplicate": "with more active write-off entries than posted write-offs (double posting)",
        "amount": "whose write-off entries credit AR by a different amount than written off",
        "orphan": "not written off in the sub-ledger but with an active write-off entry",
        "over": "whose posted write-offs exceed the invoice amount",
    }
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        for k in kinds(r):
            groups[(r.entity_code, r.currency, k)].append(r)
    out = []
    for (entity, currency, k), items in groups.items():
        if k == "over":
            expected = _sum(conn, (r.amount for r in items))
            actual = _sum(conn, (r.posted_total for r in items))
            amounts = f"invoice amount {money_str(expected)}, posted write-offs {money_str(actual)}"
        else:
            expected = _sum(conn, (r.written_off_amount for r in items if r.written_off))
            actual = _sum(conn, (r.ar_credit for r in items))
            amounts = f"written off {money_str(expected)}, GL AR credited {money_str(actual)}"
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "status": r.status,
                "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                "gl_ar_credit": money_str(_dec(conn, r.ar_credit)),
                "posted_writeoffs": r.n_posted,
                "posted_writeoff_total": money_str(_dec(conn, r.posted_total)),
                "active_entries": entries.get(r.id, []),
            }
            for r in items
        ]
        out.append(
            Break(
                check="writeoff_entries",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(f"{len(items)} invoice(s) of {entity} {texts[k]}: {amounts} {currency}{_more(len(items))}"),
            )
        )
    return out


def check_recoveries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Per invoice: recoveries never exceed the amount written off; ``recovered_amount`` = sum of recoveries rows;
    recoveries are in the invoice currency and have a posted journal entry."""
    tol_sql, params = _tol_cte(conn, tolerance)
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql},
            r AS (SELECT rc.invoice_id, SUM(rc.amount) AS amount, COUNT(*) AS n,
                         SUM(CASE WHEN e.id IS NULL OR e.status <> 'posted' THEN 1 ELSE 0 END) AS unposted,
                         SUM(CASE WHEN rc.currency <> i.currency THEN 1 ELSE 0 END) AS wrong_currency
                  FROM recoveries rc
                  JOIN invoices i ON i.id = rc.invoice_id
                  LEFT JOIN journal_entries e ON e.id = rc.journal_entry_id
                  GROUP BY rc.invoice_id),
            c AS (
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.written_off_amount, i.recovered_amount,
                       r.amount AS recovered, r.n, r.unposted, r.wrong_currency
                FROM r JOIN invoices i ON i.id = r.invoice_id
                UNION ALL
                SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.written_off_amount, i.recovered_amount,
                       0, 0, 0, 0
                FROM invoices i
                WHERE i.recovered_amount <> 0 AND NOT EXISTS (SELECT 1 FROM recoveries x WHERE x.invoice_id = i.id)
            )
            SELECT c.*,
                   CASE WHEN ROUND(c.recovered - c.written_off_amount, 4) > {_tol_of("tol")} THEN 1 ELSE 0 END
                       AS exceeds,
                   CASE WHEN ABS(ROUND(c.recovered - c.recovered_amount, 4)) > {_tol_of("tol")} THEN 1 ELSE 0 END
                       AS mismatch
            FROM c LEFT JOIN tol ON tol.currency = c.currency
            WHERE ROUND(c.recovered - c.written_off_amount, 4) > {_tol_of("tol")}
               OR ABS(ROUND(c.recovered - c.recovered_amount, 4)) > {_tol_of("tol")}
               OR c.unposted > 0 OR c.wrong_currency > 0
            ORDER BY c.entity_code, c.currency, c.id
            """
        ),
        params,
    ).all()
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r.exceeds:
            groups[(r.entity_code, r.currency, "exceeds")].append(r)
        if r.mismatch:
            groups[(r.entity_code, r.currency, "mismatch")].append(r)
        if r.unposted:
            groups[(r.entity_code, r.currency, "unposted")].append(r)
        if r.wrong_currency:
            groups[(r.entity_code, r.currency, "currency")].append(r)
    out = []
    for (entity, currency, k), items in groups.items():
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                "recovered_amount": money_str(_dec(conn, r.recovered_amount)),
                "recoveries_total": money_str(_dec(conn, r.recovered)),
                "recoveries": r.n,
            }
            for r in items
        ]
        recovered = _sum(conn, (r.recovered for r in items))
        if k == "exceeds":
            expected = _sum(conn, (r.written_off_amount for r in items))
            what = "recovered more than was written off"
        elif k == "mismatch":
            expected = _sum(conn, (r.recovered_amount for r in items))
            what = "have recovered_amount different from the sum of their recoveries"
        elif k == "unposted":
            expected = recovered
            what = f"have {sum(r.unposted for r in items)} recovery row(s) without a posted journal entry"
        else:
            expected = recovered
            what = "have recoveries in a currency other than the invoice's"
        out.append(
            Break(
                check="recoveries",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=recovered,
                documents=_capped(docs),
                message=(
                    f"{len(items)} invoice(s) of {entity} {what} (limit/recorded {money_str(expected)}, recoveries "
                    f"{money_str(recovered)} {currency}){_more(len(items))}"
                ),
            )
        )
    return out


def check_allowance(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The allowance account is explained by its entries, and write-offs charged to it match the sub-ledger.

    1. Balance (credit - debit) of the allowance account = the part moved by estimates (``allowance``), write-offs,
       recoveries and reversals of those. Anything else (a manual entry, a mis-coded posting) is unexplained.
    2. Per entity and currency, allowance debits from write-off entries (net of their reversals) = the sub-ledger's
       ``written_off_amount`` for allowance-method entities, and 0 for direct-method entities (whose write-offs go
       to bad-debt expense and must not touch the reserve).
    """
    tol_sql, params = _tol_cte(conn, tolerance)
    sources, p2 = _in_list("src", ALLOWANCE_SOURCES)
    params.update(p2)
    allowance_lines = f"""
        SELECT l.entity_code, l.currency, l.account_code, l.debit, l.credit, e.id AS entry_id,
               e.idempotency_key, e.source_type,
               CASE WHEN e.source_type IN ({sources})
                      OR (e.source_type = 'reversal' AND o.source_type IN ({sources})) THEN 1 ELSE 0 END AS explained,
               CASE WHEN e.source_type = 'writeoff'
                      OR (e.source_type = 'reversal' AND o.source_type = 'writeoff') THEN 1 ELSE 0 END AS from_writeoff
        FROM journal_lines l
        JOIN journal_entries e ON e.id = l.entry_id AND e.status = 'posted'
        JOIN accounts a ON a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'allowance'
        LEFT JOIN journal_entries o ON o.id = e.reverses_entry_id
    """
    out: list[Break] = []
    unexplained = conn.execute(
        text(
            f"""
            WITH {tol_sql}, al AS ({allowance_lines})
            SELECT al.entity_code, al.currency, MIN(al.account_code) AS account_code,
                   SUM(al.credit - al.debit) AS balance,
                   SUM(CASE WHEN al.explained = 1 THEN al.credit - al.debit ELSE 0 END) AS explained
            FROM al LEFT JOIN tol ON tol.currency = al.currency
            GROUP BY al.entity_code, al.currency, tol.amount
            HAVING ABS(ROUND(SUM(CASE WHEN al.explained = 0 THEN al.credit - al.debit ELSE 0 END), 4))
                   > {_tol_of("tol")}
            """
        ),
        params,
    ).all()
    for r in unexplained:
        docs = [
            {
                "type": "journal_entry",
                "id": d.entry_id,
                "key": d.idempotency_key,
                "source_type": d.source_type,
                "net_credit": money_str(_dec(conn, d.net)),
            }
            for d in conn.execute(
                text(
                    f"""
                    SELECT entry_id, idempotency_key, source_type, SUM(credit - debit) AS net
                    FROM ({allowance_lines}) al
                    WHERE explained = 0 AND entity_code = :e AND currency = :c
                    GROUP BY entry_id, idempotency_key, source_type ORDER BY entry_id LIMIT {MAX_DOCUMENTS}
                    """
                ),
                {**p2, "e": r.entity_code, "c": r.currency},
            )
        ]
        expected, actual = _dec(conn, r.explained), _dec(conn, r.balance)
        out.append(
            Break(
                check="allowance",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=expected,
                actual=actual,
                documents=tuple(docs),
                message=(
                    f"allowance balance {money_str(actual)} {r.currency} of {r.entity_code}: "
                    f"{money_str(actual - expected)} moved by entries other than estimates, write-offs and "
                    f"recoveries"
                ),
            )
        )
    rows = conn.execute(
        text(
            f"""
            WITH {tol_sql}, al AS ({allowance_lines}),
            gl AS (SELECT entity_code, currency, MIN(account_code) AS account_code,
                          SUM(debit - credit) AS amount
                   FROM al WHERE from_writeoff = 1 GROUP BY entity_code, currency),
            sub AS (SELECT i.entity_code, i.currency, SUM(i.written_off_amount) AS amount, COUNT(*) AS n
                    FROM invoices i JOIN legal_entities le ON le.code = i.entity_code
                    WHERE le.writeoff_method = 'allowance' AND i.written_off_amount > 0
                    GROUP BY i.entity_code, i.currency),
            k AS (SELECT entity_code, currency FROM sub UNION SELECT entity_code, currency FROM gl)
            SELECT k.entity_code, k.currency, gl.account_code, le.writeoff_method,
                   COALESCE(sub.amount, 0) AS expected, COALESCE(gl.amount, 0) AS actual, COALESCE(sub.n, 0) AS n
            FROM k
            JOIN legal_entities le ON le.code = k.entity_code
            LEFT JOIN sub ON sub.entity_code = k.entity_code AND sub.currency = k.currency
            LEFT JOIN gl ON gl.entity_code = k.entity_code AND gl.currency = k.currency
            LEFT JOIN tol ON tol.currency = k.currency
            WHERE ABS(ROUND(COALESCE(gl.amount, 0) - COALESCE(sub.amount, 0), 4)) > {_tol_of("tol")}
            ORDER BY k.entity_code, k.currency
            """
        ),
        params,
    ).all()
    for r in rows:
        expected, actual = _dec(conn, r.expected), _dec(conn, r.actual)
        what = (
            f"sub-ledger write-offs {money_str(expected)} on {r.n} invoices"
            if r.writeoff_method == "allowance"
            else "0 expected (direct-method entity)"
        )
        out.append(
            Break(
                check="allowance",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=expected,
                actual=actual,
                message=(
                    f"allowance debits from write-offs {money_str(actual)} {r.currency} of {r.entity_code} vs {what}"
                ),
            )
        )
    return out


# --- checks in SQLAlchemy Core (money columns keep their column types, whatever their storage) -------------------

_JE = journal_entries
_JL = journal_lines


def _active_posted_writeoffs():
    """``writeoffs`` rows in status 'posted' with their posted write-off entry, and their invoice."""
    w, e, i = writeoffs.alias("w"), _JE.alias("we"), invoices.alias("i")
    return (
        w,
        e,
        i,
        w.join(i, i.c.id == w.c.invoice_id).join(
            e, and_(e.c.id == w.c.journal_entry_id, e.c.status == "posted", e.c.source_type == "writeoff")
        ),
    )


def _wo_doc(conn: Connection, r: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "writeoff",
        "id": r.writeoff_id,
        "invoice_ref": r.invoice_ref,
        "amount": money_str(_dec(conn, r.amount)),
        "selected_on": str(r.selected_on),
        "posted_on": str(r.posted_on),
        **extra,
    }


def _group(rows: Iterable[Any], key: Callable[[Any], tuple]) -> dict[tuple, list[Any]]:
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return groups


def check_paid_after_selection(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off of an invoice that was paid: (1) a regular payment (allocation or payment date) after the
    write-off's selection date and on or before its posting date, which posting must have skipped; (2) an invoice
    whose regular cash plus ``written_off_amount`` exceeds its amount: the same money is both collected and written
    off (cash on a written-off amount is a recovery, never a regular payment). Dates are business dates, never
    timestamps. Expected 0; actual the write-off amount (1) or the excess over the invoice amount (2)."""
    w, e, i, src = _active_posted_writeoffs()
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    q1 = (
        select(
            w.c.id.label("writeoff_id"),
            w.c.amount,
            w.c.as_of_date.label("selected_on"),
            e.c.posting_date.label("posted_on"),
            i.c.invoice_ref,
            i.c.entity_code,
            i.c.currency,
            func.min(pa.c.allocated_on).label("paid_on"),
        )
        .select_from(
            src.join(pa, and_(pa.c.invoice_id == w.c.invoice_id, pa.c.kind == "regular")).join(
                p, p.c.id == pa.c.payment_id
            )
        )
        .where(
            or_(
                and_(pa.c.allocated_on > w.c.as_of_date, pa.c.allocated_on <= e.c.posting_date),
                and_(p.c.payment_date > w.c.as_of_date, p.c.payment_date <= e.c.posting_date),
            )
        )
        .group_by(w.c.id, w.c.amount, w.c.as_of_date, e.c.posting_date, i.c.invoice_ref, i.c.entity_code, i.c.currency)
        .order_by(i.c.entity_code, i.c.currency, w.c.id)
    )
    groups = _group(conn.execute(q1).all(), lambda r: (r.entity_code, r.currency, "late"))
    # Only written-off invoices, then their regular allocations by the indexed invoice_id (never all payments).
    inv = invoices.alias("inv")
    cash = func.sum(pa.c.amount)
    q2 = (
        select(
            inv.c.id,
            inv.c.invoice_ref,
            inv.c.entity_code,
            inv.c.currency,
            inv.c.amount,
            inv.c.written_off_amount,
            cash.label("cash"),
        )
        .select_from(inv.join(pa, and_(pa.c.invoice_id == inv.c.id, pa.c.kind == "regular")))
        .where(inv.c.written_off_amount > 0)
        .group_by(
            inv.c.id, inv.c.invoice_ref, inv.c.entity_code, inv.c.currency, inv.c.amount, inv.c.written_off_amount
        )
        .having(func.round(cash + inv.c.written_off_amount - inv.c.amount, 4) > 0)
        .order_by(inv.c.entity_code, inv.c.currency, inv.c.id)
    )
    for r in conn.execute(q2):
        excess = _dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount)
        if excess > tolerance.for_currency(r.currency):
            groups[(r.entity_code, r.currency, "over")].append(r)
    out = []
    for (entity, currency, kind), items in groups.items():
        if kind == "late":
            actual = _sum(conn, (r.amount for r in items))
            docs = [_wo_doc(conn, r, paid_on=str(r.paid_on)) for r in items]
            what = "posted although a payment arrived after selection and before posting"
        else:
            actual = _sum(
                conn, (_dec(conn, r.cash) + _dec(conn, r.written_off_amount) - _dec(conn, r.amount) for r in items)
            )
            docs = [
                {
                    "type": "invoice",
                    "id": r.id,
                    "ref": r.invoice_ref,
                    "amount": money_str(_dec(conn, r.amount)),
                    "regular_cash": money_str(_dec(conn, r.cash)),
                    "written_off_amount": money_str(_dec(conn, r.written_off_amount)),
                }
                for r in items
            ]
            what = "paid and written off: regular cash plus the amount written off exceed the invoice"
        out.append(
            Break(
                check="paid_after_selection",
                entity=entity,
                currency=currency,
                expected=_dec(conn, 0),
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{len(items)} write-off(s)/invoice(s) of {entity} {what}: {money_str(actual)} {currency} "
                    f"written off that was paid{_more(len(items))}"
                ),
            )
        )
    return out


def check_posting_rules(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No posted write-off broke a rule posting re-checks: (1) a dispute/payment-plan hold on the invoice or the
    customer active on the posting date (started on or before it, not ended before it); (2) a child invoice whose
    balance went to the parent, with a regular payment by the parent on or before the posting date (DOMAIN: such a
    child invoice cannot be written off). Expected 0; actual the amount written off."""
    w, e, i, src = _active_posted_writeoffs()
    h = holds.alias("h")
    cols = (
        w.c.id.label("writeoff_id"),
        w.c.amount,
        w.c.as_of_date.label("selected_on"),
        e.c.posting_date.label("posted_on"),
        i.c.invoice_ref,
        i.c.entity_code,
        i.c.currency,
    )
    active_hold = and_(
        h.c.start_date <= e.c.posting_date, or_(h.c.end_date.is_(None), h.c.end_date >= e.c.posting_date)
    )
    # Invoice holds and account holds as two joins on indexed keys (an OR in one join condition would scan holds).
    on_hold = union_all(
        select(*cols, h.c.start_date.label("since")).select_from(
            src.join(h, and_(h.c.invoice_id == w.c.invoice_id, active_hold))
        ),
        select(*cols, h.c.start_date).select_from(
            src.join(h, and_(h.c.customer_id == i.c.customer_id, h.c.invoice_id.is_(None), active_hold))
        ),
    ).subquery("on_hold")
    cust = customers.alias("cust")
    pa, p = payment_allocations.alias("pa"), payments.alias("p")
    parent_paid = (
        select(*cols, pa.c.allocated_on.label("since"))
        .select_from(
            src.join(cust, cust.c.id == i.c.customer_id)
            .join(
                pa,
                and_(
                    pa.c.invoice_id == w.c.invoice_id,
                    pa.c.kind == "regular",
                    pa.c.allocated_on <= e.c.posting_date,
                ),
            )
            .join(p, and_(p.c.id == pa.c.payment_id, p.c.customer_id == cust.c.parent_id))
        )
        .where(i.c.balance_transferred_to_parent == true())
        .subquery("parent_paid")
    )

    def grouped(sq: Any, kind: str) -> Any:
        keys_ = [sq.c[c.name] for c in cols]
        return select(*keys_, func.min(sq.c.since).label("since"), literal(kind).label("kind")).group_by(*keys_)

    q = union_all(grouped(on_hold, "hold"), grouped(parent_paid, "parent")).subquery("q")
    q = select(q).order_by(q.c.entity_code, q.c.currency, q.c.kind, q.c.writeoff_id)
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for r in conn.execute(q):
        groups[(r.entity_code, r.currency, r.kind)].append(r)
    texts = {
        "hold": "posted while a dispute/payment-plan hold was active on the invoice or customer",
        "parent": "of child invoices whose transferred balance the parent had paid in part",
    }
    out = []
    for (entity, currency, kind), items in groups.items():
        actual = _sum(conn, (r.amount for r in items))
        docs = [
            _wo_doc(conn, r, hold_since=str(r.since))
            if kind == "hold"
            else _wo_doc(conn, r, parent_paid_on=str(r.since))
            for r in items
        ]
        out.append(
            Break(
                check="posting_rules",
                entity=entity,
                currency=currency,
                expected=_dec(conn, 0),
                actual=actual,
                documents=_capped(docs),
                message=f"{len(items)} write-off(s) of {entity} {texts[kind]}: {money_str(actual)} {currency}"
                f"{_more(len(items))}",
            )
        )
    return out


#: Journal sources that book cash received on written-off amounts (plus reversals of entries of these sources).
RECOVERY_CASH_SOURCES: tuple[str, ...] = ("recovery", "unapplied_cash")


def check_recovery_cash(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Cash received on written-off amounts = cash booked for it, per invoice (grouped per entity and currency).

    Received: 'recovery' payment allocations dated on or before ``as_of``, plus recoveries booked without such an
    allocation (by hand, or for a payment allocated otherwise). Booked: the cash-role account's debit - credit on
    posted entries of source ``recovery`` or ``unapplied_cash`` (and reversals of those), by the lines' invoice.
    The excess of a recovery allocation over what is still written off must be booked as unapplied cash, so an
    allocation booked only up to the cap shows up here. Regular payments are outside: the ERP books them (AR sync).
    """
    pa = payment_allocations.alias("pa")
    inv = invoices.alias("inv")
    rc = recoveries.alias("rc")
    pa2 = payment_allocations.alias("pa2")
    ln, e, o, a = _JL.alias("l"), _JE.alias("e"), _JE.alias("o"), accounts.alias("a")
    zero = literal(0, type_=MONEY)
    received_alloc = (
        select(inv.c.entity_code, inv.c.currency, pa.c.invoice_id, pa.c.amount.label("received"), zero.label("booked"))
        .select_from(pa.join(inv, inv.c.id == pa.c.invoice_id))
        .where(pa.c.kind == "recovery", pa.c.allocated_on <= as_of)
    )
    received_manual = (
        select(inv.c.entity_code, rc.c.currency, rc.c.invoice_id, rc.c.amount, zero)
        .select_from(rc.join(inv, inv.c.id == rc.c.invoice_id))
        .where(
            ~exists().where(
                pa2.c.kind == "recovery",
                pa2.c.invoice_id == rc.c.invoice_id,
                pa2.c.payment_id == rc.c.payment_id,
                pa2.c.allocated_on <= as_of,
            )
        )
    )
    sources = list(RECOVERY_CASH_SOURCES)
    booked = (
        select(ln.c.entity_code, ln.c.currency, ln.c.invoice_id, zero, (ln.c.debit - ln.c.credit))
        .select_from(
            ln.join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted"))
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "cash"))
            .outerjoin(o, o.c.id == e.c.reverses_entry_id)
        )
        .where(or_(e.c.source_type.in_(sources), and_(e.c.source_type == "reversal", o.c.source_type.in_(sources))))
    )
    u = union_all(received_alloc, received_manual, booked).subquery("u")
    per = (
        select(
            u.c.entity_code,
            u.c.currency,
            u.c.invoice_id,
            func.sum(u.c.received).label("received"),
            func.sum(u.c.booked).label("booked"),
        )
        .group_by(u.c.entity_code, u.c.currency, u.c.invoice_id)
        .having(func.round(func.sum(u.c.received) - func.sum(u.c.booked), 4) != 0)
        .subquery("per")
    )
    ref = invoices.alias("ref")
    rows = conn.execute(
        select(per, ref.c.invoice_ref)
        .select_from(per.outerjoin(ref, ref.c.id == per.c.invoice_id))
        .order_by(per.c.entity_code, per.c.currency, per.c.invoice_id)
    ).all()
    groups = _group(
        (r for r in rows if abs(_dec(conn, r.booked) - _dec(conn, r.received)) > tolerance.for_currency(r.currency)),
        lambda r: (r.entity_code, r.currency),
    )
    out = []
    for (entity, currency), items in groups.items():
        expected, actual = _sum(conn, (r.received for r in items)), _sum(conn, (r.booked for r in items))
        docs = [
            {
                "type": "invoice",
                "id": r.invoice_id,
                "ref": r.invoice_ref,
                "received": money_str(_dec(conn, r.received)),
                "booked": money_str(_dec(conn, r.booked)),
            }
            for r in items
        ]
        out.append(
            Break(
                check="recovery_cash",
                entity=entity,
                currency=currency,
                expected=expected,
                actual=actual,
                documents=_capped(docs),
                message=(
                    f"{len(items)} invoice(s) of {entity}: recovery cash received {money_str(expected)} {currency}, "
                    f"booked to cash {money_str(actual)} (recoveries + unapplied cash){_more(len(items))}"
                ),
            )
        )
    return out


def check_allowance_sign(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The allowance account (a contra-asset) never has a debit balance; and right after the latest estimate's
    true-up entry (key ``alw:``, posted on the estimate date) its balance equalled the estimate's required allowance.

    Sign: per entity and currency, credit - debit of the allowance-role account over posted entries; expected >= 0.
    Adequacy: for the latest ``allowance_estimates`` date on or before ``as_of``, the balance over entries up to and
    including that true-up (by entry id, so that the day's later write-offs do not count) = SUM(required_allowance).
    An estimate without a true-up entry (the balance was already right) is not judged.
    """
    ln, e, a = _JL.alias("l"), _JE.alias("e"), accounts.alias("a")
    allowance_lines = ln.join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted")).join(
        a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance")
    )
    out: list[Break] = []
    sign = conn.execute(
        select(
            ln.c.entity_code,
            ln.c.currency,
            func.min(ln.c.account_code).label("account_code"),
            func.sum(ln.c.credit - ln.c.debit).label("balance"),
        )
        .select_from(allowance_lines)
        .group_by(ln.c.entity_code, ln.c.currency)
        .having(func.round(func.sum(ln.c.credit - ln.c.debit), 4) < 0)
        .order_by(ln.c.entity_code, ln.c.currency)
    ).all()
    for r in sign:
        balance = _dec(conn, r.balance)
        if -balance <= tolerance.for_currency(r.currency):
            continue
        out.append(
            Break(
                check="allowance_sign",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=_dec(conn, 0),
                actual=balance,
                message=(
                    f"allowance account {r.account_code} of {r.entity_code} has a debit balance of "
                    f"{money_str(-balance)} {r.currency}: write-offs consumed more than the reserve held"
                ),
            )
        )
    ae = allowance_estimates.alias("ae")
    latest = (
        select(ae.c.entity_code, ae.c.currency, func.max(ae.c.as_of_date).label("day"))
        .where(ae.c.as_of_date <= as_of)
        .group_by(ae.c.entity_code, ae.c.currency)
        .subquery("latest")
    )
    req = (
        select(latest.c.entity_code, latest.c.currency, latest.c.day, func.sum(ae.c.required_allowance).label("req"))
        .select_from(
            latest.join(
                ae,
                and_(
                    ae.c.entity_code == latest.c.entity_code,
                    ae.c.currency == latest.c.currency,
                    ae.c.as_of_date == latest.c.day,
                ),
            )
        )
        .group_by(latest.c.entity_code, latest.c.currency, latest.c.day)
        .subquery("req")
    )
    cut = (
        select(req.c.entity_code, req.c.currency, req.c.day, req.c.req, func.max(e.c.id).label("cut"))
        .select_from(
            req.join(ln, and_(ln.c.entity_code == req.c.entity_code, ln.c.currency == req.c.currency))
            .join(
                e,
                and_(
                    e.c.id == ln.c.entry_id,
                    e.c.status == "posted",
                    e.c.posting_date == req.c.day,
                    e.c.idempotency_key.like(f"{keys.ALLOWANCE_PREFIX}%"),
                ),
            )
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance"))
        )
        .group_by(req.c.entity_code, req.c.currency, req.c.day, req.c.req)
        .subquery("cut")
    )
    adequacy = conn.execute(
        select(
            cut.c.entity_code,
            cut.c.currency,
            cut.c.day,
            cut.c.req,
            cut.c.cut,
            func.min(ln.c.account_code).label("account_code"),
            func.sum(ln.c.credit - ln.c.debit).label("balance"),
        )
        .select_from(
            cut.join(
                ln,
                and_(
                    ln.c.entity_code == cut.c.entity_code, ln.c.currency == cut.c.currency, ln.c.entry_id <= cut.c.cut
                ),
            )
            .join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted"))
            .join(a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "allowance"))
        )
        .group_by(cut.c.entity_code, cut.c.currency, cut.c.day, cut.c.req, cut.c.cut)
        .order_by(cut.c.entity_code, cut.c.currency)
    ).all()
    for r in adequacy:
        required, balance = _dec(conn, r.req), _dec(conn, r.balance)
        if abs(balance - required) <= tolerance.for_currency(r.currency):
            continue
        out.append(
            Break(
                check="allowance_sign",
                entity=r.entity_code,
                currency=r.currency,
                account=r.account_code,
                expected=required,
                actual=balance,
                documents=({"type": "journal_entry", "id": r.cut, "estimate_date": str(r.day)},),
                message=(
                    f"allowance of {r.entity_code} after the {r.day} true-up: {money_str(balance)} {r.currency}, "
                    f"the estimate of {r.day} requires {money_str(required)}"
                ),
            )
        )
    return out


def check_ar_functional(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """No functional-currency residue on AR control: where the AR balance in a transaction currency is zero (per
    entity and currency, or per invoice whose AR lines net to zero), its functional balance is zero too (e.g. an
    invoice raised at 15.05 and written off at 15.04 leaves 0.01 behind). Expected 0; actual the functional
    residue, in the entity's functional currency (tolerance of that currency)."""
    ln, e, a = _JL.alias("l"), _JE.alias("e"), accounts.alias("a")
    ar = ln.join(e, and_(e.c.id == ln.c.entry_id, e.c.status == "posted")).join(
        a, and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == "ar_control")
    )
    txn = func.sum(ln.c.debit - ln.c.credit)
    fun = func.sum(ln.c.functional_debit - ln.c.functional_credit)
    cols = (
        ln.c.entity_code,
        ln.c.currency,
        func.min(ln.c.functional_currency).label("functional_currency"),
        func.min(ln.c.account_code).label("account_code"),
        fun.label("residue"),
    )
    totals = conn.execute(
        select(*cols)
        .select_from(ar)
        .group_by(ln.c.entity_code, ln.c.currency)
        .having(and_(func.round(txn, 4) == 0, func.round(fun, 4) != 0))
    ).all()
    ref = invoices.alias("ref")
    per_invoice = conn.execute(
        select(*cols, ln.c.invoice_id, func.min(ref.c.invoice_ref).label("invoice_ref"))
        .select_from(ar.join(ref, ref.c.id == ln.c.invoice_id))
        .group_by(ln.c.entity_code, ln.c.currency, ln.c.invoice_id)
        .having(and_(func.round(txn, 4) == 0, func.round(fun, 4) != 0))
        .order_by(ln.c.entity_code, ln.c.currency, ln.c.invoice_id)
    ).all()
    docs = _group(per_invoice, lambda r: (r.entity_code, r.currency))
    found: dict[tuple, tuple[Decimal, str, str]] = {}
    for r in totals:
        found[(r.entity_code, r.currency)] = (_dec(conn, r.residue), r.functional_currency, r.account_code)
    for k, items in docs.items():
        if k not in found:
            found[k] = (_sum(conn, (r.residue for r in items)), items[0].functional_currency, items[0].account_code)
    out = []
    for (entity, currency), (residue, fcur, account) in sorted(found.items()):
        if abs(residue) <= tolerance.for_currency(fcur):
            continue
        items = docs.get((entity, currency), [])
        out.append(
            Break(
                check="ar_functional",
                entity=entity,
                currency=currency,
                account=account,
                expected=_dec(conn, 0),
                actual=residue,
                documents=_capped(
                    [
                        {
                            "type": "invoice",
                            "id": r.invoice_id,
                            "ref": r.invoice_ref,
                            "functional_residue": money_str(_dec(conn, r.residue)),
                        }
                        for r in items
                    ]
                ),
                message=(
                    f"AR control {account} of {entity}: {currency} balance is zero but {money_str(residue)} {fcur} "
                    f"remains in functional currency ({len(items)} cleared invoice(s) carry a residue)"
                ),
            )
        )
    return out


def check_movements(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """The sub-ledger's history explains its balances: per invoice, the movements (``invoice_movements``, migration
    0013) add up to the current open balance. They can only disagree if the triggers that write them were bypassed
    (a superuser's replica session, a dropped trigger), which is exactly when the as-of answers would be wrong.
    Structural: no tolerance."""
    rows = conn.execute(
        text(
            f"""
            SELECT i.entity_code, i.currency, i.id, i.invoice_ref, i.open_balance AS expected,
                   COALESCE(m.total, 0) AS actual
            FROM invoices i
            LEFT JOIN (SELECT invoice_id, SUM(balance_change) AS total FROM invoice_movements GROUP BY invoice_id) m
                   ON m.invoice_id = i.id
            WHERE ROUND(i.open_balance - COALESCE(m.total, 0), 4) <> 0
            ORDER BY i.entity_code, i.currency, i.id
            LIMIT {MAX_DOCUMENTS * 20}
            """
        )
    ).all()
    out = []
    for (entity, currency), items in sorted(_group(rows, lambda r: (r.entity_code, r.currency)).items()):
        expected = _sum(conn, (r.expected for r in items))
        actual = _sum(conn, (r.actual for r in items))
        out.append(
            Break(
                check="movements",
                entity=entity,
                currency=currency,
                account=None,
                expected=expected,
                actual=actual,
                documents=_capped(
                    [
                        {
                            "type": "invoice",
                            "id": r.id,
                            "ref": r.invoice_ref,
                            "open_balance": money_str(_dec(conn, r.expected)),
                            "movements_total": money_str(_dec(conn, r.actual)),
                        }
                        for r in items
                    ]
                ),
                message=(
                    f"{len(items)}{'+' if len(rows) >= MAX_DOCUMENTS * 20 else ''} invoice(s) of {entity} {currency}: "
                    "the sub-ledger movements do not add up to the open balance (the history was bypassed)"
                ),
            )
        )
    return out


#: How far back (days before the run's date) reconciliation recomputes the sub-ledger's balance checkpoints.
CHECKPOINT_RECHECK_DAYS = 62


def check_checkpoints(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Every sub-ledger checkpoint (migration 0016) is what the movements say: per invoice, the sum of the movements
    effective on or before its date up to its high-water mark; and its marks are true (no movement it claims to cover
    is missing, none was recorded after its ``recorded_through``). A checkpoint is derived data the as-of answers
    start from, so one that was edited or forged would make them wrong: one statement per checkpoint recomputes it.
    Structural: no tolerance.

    Bounded cost: only the checkpoints of the last ``CHECKPOINT_RECHECK_DAYS`` before the run's date are recomputed
    (each costs about one pass over the movements: seconds at 1M invoices, so all of a year's would cost minutes a
    run). An older checkpoint was recomputed by every daily run of its first two months, and no role the DAGs use
    can change one afterwards (the runtime role may only insert and read them; tests/integration/test_pg_roles.py)."""
    from writeoffs.subledger import checkpoints

    day = "CAST(:d AS DATE)" if conn.dialect.name == "postgresql" else ":d"
    out = []
    since = as_of - timedelta(days=CHECKPOINT_RECHECK_DAYS)
    for cp in (cp for cp in checkpoints(conn) if cp.as_of >= since):
        params = {"cp": cp.id, "d": cp.as_of.isoformat(), "hw": cp.movements_through}
        top, covered = conn.execute(
            text("SELECT MAX(id), MAX(CASE WHEN id <= :hw THEN recorded_at END) FROM invoice_movements"), params
        ).one()
        if cp.movements_through > (top or 0) or (covered or "") > cp.recorded_through:
            out.append(
                Break(
                    check="checkpoints",
                    message=(
                        f"checkpoint of {cp.as_of}: its marks are false (covers movements up to id "
                        f"{cp.movements_through} recorded by {cp.recorded_through}; the movements go up to id {top}, "
                        f"those covered were recorded up to {covered})"
                    ),
                    documents=({"type": "checkpoint", "id": cp.id, "as_of": cp.as_of.isoformat()},),
                )
            )
        rows = conn.execute(
            text(
                f"""
                SELECT i.entity_code, i.currency, x.invoice_id, i.invoice_ref, x.expected, x.actual
                FROM (SELECT u.invoice_id, SUM(u.expected) AS expected, SUM(u.actual) AS actual FROM (
                        SELECT m.invoice_id, m.balance_change AS expected, 0 AS actual FROM invoice_movements m
                        WHERE m.effective_date <= {day} AND m.id <= :hw
                        UNION ALL
                        SELECT b.invoice_id, 0, b.balance FROM balance_checkpoint_rows b
                        WHERE b.checkpoint_id = :cp) u
                      GROUP BY u.invoice_id HAVING SUM(u.expected) <> SUM(u.actual)) x
                LEFT JOIN invoices i ON i.id = x.invoice_id
                ORDER BY i.entity_code, i.currency, x.invoice_id
                LIMIT {MAX_DOCUMENTS * 20}
                """
            ),
            params,
        ).all()
        for (entity, currency), items in sorted(
            _group(rows, lambda r: (r.entity_code or "", r.currency or "")).items()
        ):
            out.append(
                Break(
                    check="checkpoints",
                    entity=entity or None,
                    currency=currency or None,
                    expected=_sum(conn, (r.expected for r in items)),
                    actual=_sum(conn, (r.actual for r in items)),
                    documents=_capped(
                        [
                            {
                                "type": "invoice",
                                "id": r.invoice_id,
                                "ref": r.invoice_ref,
                                "checkpoint": cp.as_of.isoformat(),
                                "movements_total": money_str(_dec(conn, r.expected)),
                                "checkpoint_balance": money_str(_dec(conn, r.actual)),
                            }
                            for r in items
                        ]
                    ),
                    message=(
                        f"checkpoint of {cp.as_of}: {len(items)}{'+' if len(rows) >= MAX_DOCUMENTS * 20 else ''} "
                        f"invoice balance(s) of {entity or '?'} {currency or '?'} differ from the movements "
                        "(edited or forged; delete it and build it again)"
                    ),
                )
            )
    return out


#: The registry: every run executes all of these, in this order. Add a check by appending here.
CHECKS: tuple[Check, ...] = (
    Check("subledger_vs_gl", "Sub-ledger open AR = GL AR control, per entity and currency", check_subledger_vs_gl),
    Check("approved_vs_posted", "Approved = posted + skipped with a reason, per batch", check_approved_vs_posted),
    Check("entries_balanced", "Every journal entry balances (transaction and functional)", check_entries_balanced),
    Check("writeoff_entries", "Exactly one active write-off entry per written-off invoice", check_writeoff_entries),
    Check("recoveries", "Recoveries within amounts written off, recovered_amount consistent", check_recoveries),
    Check("allowance", "Allowance account explained by its entries; write-offs charged match", check_allowance),
    Check(
        "paid_after_selection",
        "No posted write-off of an invoice paid after selection, or paid and written off beyond its amount",
        check_paid_after_selection,
    ),
    Check(
        "posting_rules",
        "No posted write-off under an active hold, or of a child invoice the parent paid in part",
        check_posting_rules,
    ),
    Check("recovery_cash", "Cash received on written-off amounts = cash booked, per invoice", check_recovery_cash),
    Check(
        "allowance_sign",
        "Allowance never in debit; equal to the latest estimate right after its true-up",
        check_allowance_sign,
    ),
    Check("ar_functional", "No functional residue on AR where the transaction balance is zero", check_ar_functional),
    Check(
        "writeoff_lines",
        "Each posted write-off's entry = its approved item: reason's account, amount, two lines",
        check_writeoff_lines,
    ),
    Check(
        "approval_digests",
        "Each posted batch's items still hash to the digest its audited approval recorded",
        check_approval_digests,
    ),
    Check(
        "period_seals",
        "Every closed period's posted lines still add up to the seal recorded at close",
        check_period_seals,
    ),
    Check("audit_chain", "Audit chain intact under its key and up to the checkpoint kept outside", check_audit_chain),
    Check("movements", "Every invoice's movements add up to its open balance (history not bypassed)", check_movements),
    Check("checkpoints", "Every sub-ledger checkpoint equals its movements, up to its marks", check_checkpoints),
)


# --- running, storing, reporting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    check: Check
    breaks: tuple[Break, ...]
    seconds: float
    error: str | None = None  # the check itself could not run (reported as a break too)


def run_checks(
    conn: Connection, as_of: date, tolerance: Tolerances, checks: Iterable[Check] = CHECKS
) -> list[CheckOutcome]:
    """Run every check on ``conn``; a check that fails to run is a break of its own, never a reason to stop."""
    outcomes = []
    for chk in checks:
        t0 = time.perf_counter()
        # PostgreSQL aborts the whole transaction on an error: a savepoint keeps the other checks running.
        savepoint = conn.begin_nested() if conn.dialect.name == "postgresql" else None
        try:
            breaks = tuple(chk.fn(conn, as_of, tolerance))
            if savepoint is not None:
                savepoint.commit()
            error = None
        except Exception as exc:  # any failure of one check is recorded; the others still run
            if savepoint is not None:
                savepoint.rollback()
            log.exception("reconciliation check %s failed to run", chk.name)
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            breaks = (Break(check=chk.name, message=f"check could not run: {error}"),)
        outcomes.append(CheckOutcome(chk, breaks, time.perf_counter() - t0, error))
    return outcomes


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


def _snapshot(conn: Connection) -> Connection:
    if conn.dialect.name == "postgresql":
        # One snapshot for all checks: read-only repeatable read never blocks writers and never sees half a posting.
        return conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return conn


def store_run(
    conn: Connection, *, run_key: str, as_of: date, outcomes: Sequence[CheckOutcome], report_path: StorePath | None
) -> int:
    """Write (or, for a retried run key, replace) the run and its breaks. Idempotent per ``run_key``."""
    n_breaks = sum(len(o.breaks) for o in outcomes)
    existing = conn.execute(select(recon_runs.c.id).where(recon_runs.c.run_key == run_key)).scalar()
    values = {
        "as_of_date": as_of,
        "checks_run": len(outcomes),
        "break_count": n_breaks,
        "report_path": location(report_path) if report_path else None,
    }
    if existing is None:
        run_id = conn.execute(
            insert(recon_runs).values(run_key=run_key, **values).returning(recon_runs.c.id)
        ).scalar_one()
    else:
        run_id = existing
        conn.execute(delete(recon_breaks).where(recon_breaks.c.run_id == run_id))
        conn.execute(update(recon_runs).where(recon_runs.c.id == run_id).values(**values))
    rows = [
        {
            "run_id": run_id,
            "check_name": b.check,
            "entity_code": b.entity,
            "currency": b.currency,
            "account_code": b.account,
            "expected": b.expected,
            "actual": b.actual,
            "difference": b.difference,
            "documents": json.dumps([dict(d) for d in b.documents], sort_keys=True, default=str),
            "message": b.message,
        }
        for o in outcomes
        for b in o.breaks
    ]
    if rows:
        conn.execute(insert(recon_breaks), rows)
    audit.append(
        conn,
        actor="reconciliation",
        action="recon.run",
        object_type="recon_run",
        object_id=run_id,
        details={
            "run_key": run_key,
            "as_of": as_of,
            "checks_run": len(outcomes),
            "break_count": n_breaks,
            "breaks_by_check": {o.check.name: len(o.breaks) for o in outcomes},
        },
    )
    return int(run_id)


def report_path_for(
    as_of: date, run_key: str, base_dir: Path | None = None, *, reports: StorePath | None = None
) -> StorePath:
    """``<reports>/reconciliation/<as_of>-<run>.md`` (run key made file-name safe). ``reports`` is the reports
    store's root (:mod:`writeoffs.report_store`; default ``WRITEOFFS_REPORTS_STORE``, else
    ``$WRITEOFFS_DATA_DIR/reports``); ``base_dir`` a data folder whose ``reports`` folder is used instead."""
    from writeoffs.report_store import reports_under

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_key).strip("_")[:150] or "run"
    return reports_under(base_dir, reports) / "reconciliation" / f"{as_of.isoformat()}-{safe}.md"


def _cell(value: object) -> str:
    return md(value)  # customer data renders literally (writeoffs.safe_text)


def render_report(result_like: ReconResult) -> str:
    """The per-run Markdown report: summary table per check, then every break with its documents."""
    r = result_like
    lines = [
        f"# Reconciliation {r.as_of.isoformat()}",
        "",
        f"- Run: `{r.run_key}` (recon run id {r.run_id})",
        f"- Result: **{'CLEAN' if not r.break_count else f'{r.break_count} BREAK(S)'}**",
        f"- Tolerances: {', '.join(f'{k} {v}' for k, v in r.tolerance.as_dict().items())}",
        f"- Duration: {r.seconds:.2f} s",
        "",
        "| Check | What it proves | Breaks | Seconds |",
        "|---|---|---:|---:|",
    ]
    for o in r.outcomes:
        lines.append(f"| `{o.check.name}` | {_cell(o.check.title)} | {len(o.breaks)} | {o.seconds:.3f} |")
    if r.break_count:
        lines += ["", "## Breaks", "", "Difference = actual - expected.", ""]
        n = 0
        for o in r.outcomes:
            for b in o.breaks:
                n += 1
                lines += [
                    f"### {n}. `{b.check}` {b.entity or ''} {b.currency or ''}".rstrip(),
                    "",
                    b.message,
                    "",
                    "| Entity | Currency | Account | Expected | Actual | Difference |",
                    "|---|---|---|---:|---:|---:|",
                    "| "
                    + " | ".join(
                        _cell(v)
                        for v in (
                            b.entity,
                            b.currency,
                            b.account,
                            money_str(b.expected) if b.expected is not None else "",
                            money_str(b.actual) if b.actual is not None else "",
                            money_str(b.difference) if b.difference is not None else "",
                        )
                    )
                    + " |",
                    "",
                ]
                if b.documents:
                    lines.append("Affected documents:")
                    lines.append("")
                    for d in b.documents:
                        lines.append(f"- `{json.dumps(dict(d), sort_keys=True, default=str)}`")
                    lines.append("")
    return "\n".join(lines) + "\n"


def reconcile(
    engine: Engine,
    as_of: date,
    *,
    run_key: str,
    tolerance: Tolerances | None = None,
    checks: Sequence[Check] = CHECKS,
    report_dir: Path | None = None,
    reports: StorePath | None = None,
    write_report: bool = True,
) -> ReconResult:
    """Run all checks on one snapshot, store run + breaks, write the report. Re-running a run key replaces it."""
    tolerance = tolerance or Tolerances()
    started = time.perf_counter()
    with engine.begin() as conn:
        # The checks join the tables the last ingest and posting just bulk-wrote: planned on stale statistics
        # (autovacuum has not caught up yet) one of them took minutes instead of seconds (writeoffs.db.stats).
        analyzed = stats.analyze_stale(conn)
    if analyzed:
        log.info("statistics refreshed before the checks: %s", ", ".join(analyzed))
    with engine.connect() as raw:
        conn = _snapshot(raw)
        with conn.begin():
            outcomes = run_checks(conn, as_of, tolerance, checks)
    path = report_path_for(as_of, run_key, report_dir, reports=reports) if write_report else None
    with engine.begin() as conn:
        run_id = store_run(conn, run_key=run_key, as_of=as_of, outcomes=outcomes, report_path=path)
    result = ReconResult(run_id, run_key, as_of, tuple(outcomes), tolerance, path, time.perf_counter() - started)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file then rename: a reader (or a retried task) never sees half a report.
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(render_report(result), encoding="utf-8")
        tmp.replace(path)
    log.info("%s", result.headline())
    return result


# --- CLI --------------------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """``python -m writeoffs reconcile --as-of 2026-11-24 [--tolerance USD=0.01] [--run-key KEY]``."""
    p = subparsers.add_parser("reconcile", help="reconcile sub-ledger and GL; exit 1 when there are breaks")
    p.add_argument("--as-of", required=True, type=date.fromisoformat, help="business date (YYYY-MM-DD)")
    p.add_argument("--tolerance", default="", help="per-currency tolerances, e.g. USD=0.01,EUR=0.01,default=0")
    p.add_argument("--run-key", default=None, help="default: cli:<as-of>")
    p.set_defaults(func=_cmd_reconcile)


def _cmd_reconcile(args: Any) -> int:
    from writeoffs.db.engine import make_engine

    result = reconcile(
        make_engine(args.ledger_url),
        args.as_of,
        run_key=args.run_key or f"cli:{args.as_of.isoformat()}",
        tolerance=Tolerances.parse(args.tolerance),
    )
    print(result.headline())
    if result.report_path:
        print(f"report: {location(result.report_path)}")
    return 1 if result.break_count else 0
