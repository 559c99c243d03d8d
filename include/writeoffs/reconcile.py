"""Reconciliation: does the sub-ledger agree with the general ledger, and did every approval end in the books?

Each check is a plain function ``check(conn, as_of, tolerance) -> list[Break]`` registered in :data:`CHECKS`. A
check never raises on a finding and never stops at the first one: it returns every break it sees, grouped so that
one root cause yields one break per (entity, currency, kind) with the affected documents attached. Checks are
set-wise SQL (aggregates and anti-joins on indexed keys); Python only shapes the offending rows, so the run costs
the same few scans whether the ledger holds a thousand invoices or a million.

All checks of a run read one consistent snapshot (REPEATABLE READ on PostgreSQL, one read transaction on
SQLite): a posting committing halfway through a run must not show up as a break in one check and not in another.

What is compared is the *current* state of both ledgers; ``as_of`` is the business date the run is filed under.
The invoice sub-ledger keeps no history (only today's ``open_balance``), so a point-in-time comparison of a past
date cannot be computed from it, and pretending otherwise would produce false breaks on every re-run.

Amounts are compared per currency with a tolerance (default 0, i.e. exact to the 4th decimal). Structural checks
(an entry that does not balance, a posting without its journal entry, two active write-off entries) ignore the
tolerance: they are wrong at any size.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from writeoffs import audit
from writeoffs.db.schema import recon_breaks, recon_runs
from writeoffs.errors import ConfigError
from writeoffs.money import check_currency, money_str, to_decimal
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


def _dec(value: object) -> Decimal:
    """A database number as Decimal at the ledger's 4 decimals (SQLite returns floats for NUMERIC sums; NULL is 0)."""
    if value is None:
        return Decimal(0).quantize(_Q4)
    return Decimal(str(value)).quantize(_Q4)


def _sum(values: Iterable[object]) -> Decimal:
    return sum((_dec(v) for v in values), Decimal(0).quantize(_Q4))


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


CheckFn = Callable[[Connection, date, Tolerances], list[Break]]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    title: str
    fn: CheckFn


# --- SQL helpers ------------------------------------------------------------------------------------------------


def _tol_cte(tolerance: Tolerances) -> tuple[str, dict[str, object]]:
    """A ``tol(currency, amount)`` CTE so that tolerances are applied inside the set-wise query, not in Python."""
    params: dict[str, object] = {"default_tol": str(tolerance.default)}
    rows = []
    for n, (cur, amt) in enumerate(sorted(tolerance.per_currency.items())):
        rows.append(f"SELECT CAST(:tc{n} AS VARCHAR(3)) AS currency, CAST(:ta{n} AS NUMERIC(20, 4)) AS amount")
        params[f"tc{n}"] = cur
        params[f"ta{n}"] = str(amt)
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
    tol_sql, params = _tol_cte(tolerance)
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
                    "open_balance": money_str(_dec(d.expected)),
                    "gl_balance": money_str(_dec(d.actual)),
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
        expected, actual = _dec(r.expected), _dec(r.actual)
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

    Also, anywhere: an item marked ``posted`` must point at a posted write-off journal entry, and a skipped item must
    say why. One break per batch (items without a batch: per entity and currency), amounts in the batch currency:
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
                    "amount": money_str(_dec(r.amount)),
                    "journal_entry_id": r.journal_entry_id,
                    "problem": problem,
                }
            )
        t = totals.get(batch_id)
        if t is not None:
            expected, actual = _dec(t.expected), _dec(t.actual)
            where = f"batch {items[0].batch_key} ({items[0].batch_status}, {t.n} items)"
        else:
            expected = _sum(r.amount for r in items)
            actual = _sum(r.amount for r in items if r.status == "skipped" and (r.skip_reason or "").strip())
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
                "debit": None if r.dr is None else money_str(_dec(r.dr)),
                "credit": None if r.cr is None else money_str(_dec(r.cr)),
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
        dr = _sum(r.dr for r in items)
        cr = _sum(r.cr for r in items)
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
    """Each written-off invoice has exactly one active write-off entry, crediting AR by the amount written off.

    Active = posted, ``source_type = 'writeoff'``, and not reversed by a posted entry. The entry is tied to the
    invoice by its lines' ``invoice_id``. Conversely, an invoice that is not written off (or whose write-off was
    reversed) must have no active write-off entry.
    """
    tol_sql, params = _tol_cte(tolerance)
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
            )
            SELECT i.id, i.invoice_ref, i.entity_code, i.currency, i.status, i.written_off_amount,
                   COALESCE(gl.n_entries, 0) AS n_entries, COALESCE(gl.ar_credit, 0) AS ar_credit,
                   CASE WHEN i.written_off_amount > 0 AND i.status <> 'reversed' THEN 1 ELSE 0 END AS written_off
            FROM invoices i
            LEFT JOIN gl ON gl.invoice_id = i.id
            LEFT JOIN tol ON tol.currency = i.currency
            WHERE (i.written_off_amount > 0 AND i.status <> 'reversed'
                   AND (gl.invoice_id IS NULL OR gl.n_entries <> 1
                        OR ABS(ROUND(gl.ar_credit - i.written_off_amount, 4)) > {_tol_of("tol")}))
               OR ((i.written_off_amount = 0 OR i.status = 'reversed') AND gl.invoice_id IS NOT NULL)
            ORDER BY i.entity_code, i.currency, i.id
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

    def kind(r) -> str:
        if not r.written_off:
            return "orphan"
        if r.n_entries == 0:
            return "missing"
        if r.n_entries > 1:
            return "duplicate"
        return "amount"

    texts = {
        "missing": "written off in the sub-ledger without an active write-off entry",
        "duplicate": "with more than one active write-off entry (double posting)",
        "amount": "whose write-off entry credits AR by a different amount than written off",
        "orphan": "not written off in the sub-ledger but with an active write-off entry",
    }
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[(r.entity_code, r.currency, kind(r))].append(r)
    out = []
    for (entity, currency, k), items in groups.items():
        expected = _sum(r.written_off_amount for r in items if r.written_off)
        actual = _sum(r.ar_credit for r in items)
        docs = [
            {
                "type": "invoice",
                "id": r.id,
                "ref": r.invoice_ref,
                "status": r.status,
                "written_off_amount": money_str(_dec(r.written_off_amount)),
                "gl_ar_credit": money_str(_dec(r.ar_credit)),
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
                message=(
                    f"{len(items)} invoice(s) of {entity} {texts[k]}: written off {money_str(expected)}, GL AR "
                    f"credited {money_str(actual)} {currency}{_more(len(items))}"
                ),
            )
        )
    return out


def check_recoveries(conn: Connection, as_of: date, tolerance: Tolerances) -> list[Break]:
    """Per invoice: recoveries never exceed the amount written off; ``recovered_amount`` = sum of recoveries rows;
    recoveries are in the invoice currency and have a posted journal entry."""
    tol_sql, params = _tol_cte(tolerance)
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
                "written_off_amount": money_str(_dec(r.written_off_amount)),
                "recovered_amount": money_str(_dec(r.recovered_amount)),
                "recoveries_total": money_str(_dec(r.recovered)),
                "recoveries": r.n,
            }
            for r in items
        ]
        recovered = _sum(r.recovered for r in items)
        if k == "exceeds":
            expected = _sum(r.written_off_amount for r in items)
            what = "recovered more than was written off"
        elif k == "mismatch":
            expected = _sum(r.recovered_amount for r in items)
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
    tol_sql, params = _tol_cte(tolerance)
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
                "net_credit": money_str(_dec(d.net)),
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
        expected, actual = _dec(r.explained), _dec(r.balance)
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
                    WHERE le.writeoff_method = 'allowance' AND i.written_off_amount > 0 AND i.status <> 'reversed'
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
        expected, actual = _dec(r.expected), _dec(r.actual)
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


#: The registry: every run executes all of these, in this order. Add a check by appending here.
CHECKS: tuple[Check, ...] = (
    Check("subledger_vs_gl", "Sub-ledger open AR = GL AR control, per entity and currency", check_subledger_vs_gl),
    Check("approved_vs_posted", "Approved = posted + skipped with a reason, per batch", check_approved_vs_posted),
    Check("entries_balanced", "Every journal entry balances (transaction and functional)", check_entries_balanced),
    Check("writeoff_entries", "Exactly one active write-off entry per written-off invoice", check_writeoff_entries),
    Check("recoveries", "Recoveries within amounts written off, recovered_amount consistent", check_recoveries),
    Check("allowance", "Allowance account explained by its entries; write-offs charged match", check_allowance),
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
    report_path: Path | None
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
            f" ... Report: {self.report_path}" if self.report_path else ""
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
            "report_path": str(self.report_path) if self.report_path else None,
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
    conn: Connection, *, run_key: str, as_of: date, outcomes: Sequence[CheckOutcome], report_path: Path | None
) -> int:
    """Write (or, for a retried run key, replace) the run and its breaks. Idempotent per ``run_key``."""
    n_breaks = sum(len(o.breaks) for o in outcomes)
    existing = conn.execute(select(recon_runs.c.id).where(recon_runs.c.run_key == run_key)).scalar()
    values = {
        "as_of_date": as_of,
        "checks_run": len(outcomes),
        "break_count": n_breaks,
        "report_path": str(report_path) if report_path else None,
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


def report_path_for(as_of: date, run_key: str, base_dir: Path | None = None) -> Path:
    """``$WRITEOFFS_DATA_DIR/reports/reconciliation/<as_of>-<run>.md`` (run key made file-name safe)."""
    if base_dir is None:
        from writeoffs.db.engine import data_dir

        base_dir = data_dir()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_key).strip("_")[:150] or "run"
    return base_dir / "reports" / "reconciliation" / f"{as_of.isoformat()}-{safe}.md"


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
    write_report: bool = True,
) -> ReconResult:
    """Run all checks on one snapshot, store run + breaks, write the report. Re-running a run key replaces it."""
    tolerance = tolerance or Tolerances()
    started = time.perf_counter()
    with engine.connect() as raw:
        conn = _snapshot(raw)
        with conn.begin():
            outcomes = run_checks(conn, as_of, tolerance, checks)
    path = report_path_for(as_of, run_key, report_dir) if write_report else None
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
        print(f"report: {result.report_path}")
    return 1 if result.break_count else 0
