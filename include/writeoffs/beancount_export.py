"""Export the posted GL to beancount text, so that an independent double-entry checker (``bean-check``) verifies it.

Why: every other check in this project (journal triggers, :mod:`writeoffs.reconcile`) is our own code reading our
own tables. Here a standard tool that knows nothing about us re-adds every posting and compares the totals with
balance assertions computed separately in SQL. See docs/gl-check.md.

What is written (``status = 'posted'`` entries only, ``posting_date <= as_of``):

- ``open`` for every account used, named ``<Root>:<Entity>:<Label>-<code>`` (``Assets:US01:AR-1100``); the root
  comes from ``accounts.account_type`` (asset and contra_asset -> Assets, liability -> Liabilities, equity ->
  Equity, income -> Income, expense -> Expenses). Entity and account codes are sanitised to beancount's account
  syntax; a code that had to change gets a short hash of the original so two codes never merge into one account.
- ``commodity`` for every currency; one transaction per journal entry, dated ``posting_date``; debit positive,
  credit negative, the stored ``Decimal`` amounts (to the currency's minor unit when that is lossless, else at the
  database's 4 decimals: never rounded). Descriptions are source data: quotes, backslashes and line breaks are
  escaped, and the result round-trips through beancount's parser unchanged.
- ``balance`` assertions dated ``as_of + 1`` (default: the day after the last posting date), exact (``~ 0`` and
  ``tolerance_multiplier 0``: beancount's default tolerance would let a one-cent difference through):
  (a) every account's balance per entity and currency from a trial balance summed in SQL, independently of the
  postings written above; (b) ``transaction`` view only: the AR control account (role ``ar_control``) per entity
  and currency equals the sub-ledger, ``SUM(invoices.open_balance)``. If the GL and the sub-ledger disagree,
  ``bean-check`` fails naming the AR account.

Functional currency: every journal entry balances in its transaction currencies *and* in functional currency
(``journal_lines.functional_*``). One beancount file cannot hold both without letting an error in one view hide
behind the other (USD lines of a USD entity would be summed together). So there are two files, each a complete
double-entry ledger: view ``transaction`` (amounts in ``journal_lines.currency``) and view ``functional`` (amounts
in ``journal_lines.functional_currency``; ``open`` constrains each account to its entity's functional currency, so
a line booked in another functional currency fails the check). The sub-ledger assertion (b) exists only in the
transaction view: invoices carry no functional open balance (amount × booked rate is rounded per entry in the GL,
so a per-invoice recomputation would not tie to the cent by construction).

The sub-ledger holds only today's open balances, so an ``as_of`` before the last posting date is refused
(the same reasoning as in :mod:`writeoffs.reconcile`).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from writeoffs.db.engine import consistent_reads
from writeoffs.db.money import from_db_or_zero
from writeoffs.errors import LedgerError
from writeoffs.money import DB_SCALE, check_currency, quantum, to_decimal

VIEWS = ("transaction", "functional")
ROOTS = {
    "asset": "Assets",
    "contra_asset": "Assets",
    "liability": "Liabilities",
    "equity": "Equity",
    "income": "Income",
    "expense": "Expenses",
}
#: Short labels for accounts with a posting role; other accounts are labelled from their name.
ROLE_LABELS = {
    "ar_control": "AR",
    "allowance": "Allowance",
    "bad_debt_expense": "BadDebt",
    "recovery_income": "Recovery",
    "cash": "Cash",
    "suspense": "Suspense",
}
_DB_QUANTUM = Decimal(1).scaleb(-DB_SCALE)
_INVALID = re.compile(r"[^A-Za-z0-9-]")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class BeancountExportError(LedgerError):
    """The GL cannot be exported as asked (as-of before the last posting, AR control account missing, ...)."""


@dataclass(frozen=True, slots=True)
class BeancountExport:
    view: str
    text: str
    assert_date: date
    entries: int
    assertions: int


# --- names and literals -----------------------------------------------------------------------------------------


def component(code: str) -> str:
    """A code as a valid beancount account component (``[A-Z0-9][A-Za-z0-9-]*``), injective over codes."""
    comp = _INVALID.sub("-", code)
    if not comp or not (comp[0].isdigit() or "A" <= comp[0] <= "Z"):
        comp = "X" + comp
    if comp != code:
        comp += "-" + hashlib.sha256(code.encode()).hexdigest()[:8]
    return comp


def _label(name: str, role: str | None) -> str:
    if role in ROLE_LABELS:
        return ROLE_LABELS[role]
    words = re.findall(r"[A-Za-z0-9]+", name or "")
    label = "".join(w[:1].upper() + w[1:] for w in words)[:48]
    return label if label and (label[0].isdigit() or "A" <= label[0] <= "Z") else "Account" + label


def account_name(account_type: str, entity: str, code: str, name: str, role: str | None) -> str:
    try:
        root = ROOTS[account_type]
    except KeyError:
        raise BeancountExportError(f"account {entity}/{code}: unknown account type {account_type!r}") from None
    code_part = _INVALID.sub("-", code)
    if code_part != code:
        code_part += "-" + hashlib.sha256(code.encode()).hexdigest()[:8]
    return f"{root}:{component(entity)}:{_label(name, role)}-{code_part}"


def quote(value: object) -> str:
    """A beancount string literal: backslash, double quote and line breaks escaped (C-style, as its lexer reads)."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in str(value)) + '"'


def amount_text(value: object, currency: str) -> str:
    """The exact amount: at the currency's minor unit when that loses nothing, else at the database's 4 decimals."""
    dec = to_decimal(value).quantize(_DB_QUANTUM)
    q = quantum(currency)
    shown = dec.quantize(q) if dec == dec.quantize(q) else dec
    return format(shown, "f")


def _db_dec(conn: Connection, value: object) -> Decimal:
    """A money value read by raw SQL (decoded by ``writeoffs.db.money``); NULL is 0."""
    return from_db_or_zero(conn, value)


# --- queries ----------------------------------------------------------------------------------------------------


def _exact_sum(conn: Connection, expr: str) -> str:
    """SUM(expr) of money columns, exact on both databases (see writeoffs.db.money)."""
    return f"SUM({expr})"


def _from_sum(conn: Connection, value: object) -> Decimal:
    return from_db_or_zero(conn, value).quantize(_DB_QUANTUM)


def _last_posting_date(conn: Connection) -> date | None:
    value = conn.execute(text("SELECT MAX(posting_date) FROM journal_entries WHERE status = 'posted'")).scalar()
    return date.fromisoformat(value) if isinstance(value, str) else value


def _accounts(conn: Connection) -> dict[tuple[str, str], tuple[str, str, str | None]]:
    rows = conn.execute(text("SELECT entity_code, code, account_type, name, role FROM accounts")).all()
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def _functional_currencies(conn: Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(text("SELECT code, functional_currency FROM legal_entities")).all()}


def _lines(conn: Connection, view: str, as_of: date):
    cur, dr, cr = ("currency", "debit", "credit") if view == "transaction" else _FUNCTIONAL_COLUMNS
    return conn.execute(
        text(
            f"""
            SELECT e.id, e.posting_date, e.idempotency_key, e.source_type, e.description,
                   l.entity_code, l.account_code, l.{cur} AS currency, l.{dr} AS debit, l.{cr} AS credit
            FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id
            WHERE e.status = 'posted' AND e.posting_date <= :as_of
            ORDER BY e.posting_date, e.id, l.line_no
            """
        ),
        {"as_of": as_of},
    )


_FUNCTIONAL_COLUMNS = ("functional_currency", "functional_debit", "functional_credit")


def trial_balance(conn: Connection, view: str, as_of: date) -> list[tuple[str, str, str, Decimal]]:
    """(entity, account, currency, debit - credit) over posted lines up to ``as_of``, summed in SQL."""
    cur, dr, cr = ("currency", "debit", "credit") if view == "transaction" else _FUNCTIONAL_COLUMNS
    rows = conn.execute(
        text(
            f"""
            SELECT l.entity_code, l.account_code, l.{cur}, {_exact_sum(conn, f"l.{dr} - l.{cr}")}
            FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id
            WHERE e.status = 'posted' AND e.posting_date <= :as_of
            GROUP BY l.entity_code, l.account_code, l.{cur}
            ORDER BY l.entity_code, l.account_code, l.{cur}
            """
        ),
        {"as_of": as_of},
    ).all()
    return [(r[0], r[1], r[2], _from_sum(conn, r[3])) for r in rows]


def subledger_balances(conn: Connection) -> list[tuple[str, str, Decimal]]:
    """(entity, currency, SUM(open_balance)) of the invoice sub-ledger."""
    rows = conn.execute(
        text(
            f"SELECT entity_code, currency, {_exact_sum(conn, 'open_balance')} FROM invoices "
            "GROUP BY entity_code, currency ORDER BY entity_code, currency"
        )
    ).all()
    return [(r[0], r[1], _from_sum(conn, r[2])) for r in rows]


def _ar_controls(conn: Connection) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute(text("SELECT entity_code, code FROM accounts WHERE role = 'ar_control'"))}


# --- the export -------------------------------------------------------------------------------------------------


def resolve_as_of(conn: Connection, as_of: date | None) -> date:
    last = _last_posting_date(conn)
    if as_of is None:
        if last is None:
            raise BeancountExportError("no posted journal entries; give an as-of date to export an empty GL")
        return last
    if last is not None and last > as_of:
        raise BeancountExportError(
            f"entries are posted up to {last}, after the as-of date {as_of}: the sub-ledger holds only current "
            "open balances, so the GL can only be checked against it on or after the last posting date"
        )
    return as_of


def export_beancount(conn: Connection, *, view: str = "transaction", as_of: date | None = None) -> BeancountExport:
    """One view of the posted GL as beancount text (see the module docstring)."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    day = resolve_as_of(conn, as_of)
    assert_date = day + timedelta(days=1)
    chart = _accounts(conn)
    functional = _functional_currencies(conn)

    def name_of(entity: str, code: str) -> str:
        try:
            acct_type, acct_name, role = chart[(entity, code)]
        except KeyError:
            raise BeancountExportError(f"account {entity}/{code} is not in the chart of accounts") from None
        return account_name(acct_type, entity, code, acct_name, role)

    first_use: dict[tuple[str, str], date] = {}
    currencies: set[str] = set()
    body: list[str] = []
    entries = 0
    current: int | None = None
    for r in _lines(conn, view, day):
        posted = date.fromisoformat(r.posting_date) if isinstance(r.posting_date, str) else r.posting_date
        if r.id != current:
            current = r.id
            entries += 1
            body.append("")
            body.append(f"{posted.isoformat()} * {quote(r.description or '')}")
            body.append(f"  entry_id: {quote(r.id)}")
            body.append(f"  key: {quote(r.idempotency_key)}")
            body.append(f"  source_type: {quote(r.source_type)}")
        cur = check_currency(r.currency)
        currencies.add(cur)
        first_use.setdefault((r.entity_code, r.account_code), posted)
        signed = _db_dec(conn, r.debit) - _db_dec(conn, r.credit)
        body.append(f"  {name_of(r.entity_code, r.account_code)}  {amount_text(signed, cur)} {cur}")

    assertions: list[str] = []
    for entity, code, cur, balance in trial_balance(conn, view, day):
        cur = check_currency(cur)
        currencies.add(cur)
        first_use.setdefault((entity, code), day)
        assertions.append(_balance(assert_date, name_of(entity, code), balance, cur, "trial balance (SQL)"))
    if view == "transaction":
        controls = _ar_controls(conn)
        for entity, cur, open_ar in subledger_balances(conn):
            if entity not in controls:
                raise BeancountExportError(f"entity {entity} has invoices but no account with role 'ar_control'")
            cur = check_currency(cur)
            currencies.add(cur)
            first_use.setdefault((entity, controls[entity]), day)
            acct = name_of(entity, controls[entity])
            assertions.append(_balance(assert_date, acct, open_ar, cur, "sub-ledger SUM(invoices.open_balance)"))

    start = min(first_use.values(), default=day)
    head = [
        f"; Posted general ledger, {view} currency view, up to {day.isoformat()} (writeoffs.beancount_export).",
        "; Balance assertions are exact: see docs/gl-check.md.",
        'option "tolerance_multiplier" "0"',
        "",
        *(f"{start.isoformat()} commodity {c}" for c in sorted(currencies)),
        "",
    ]
    for (entity, code), opened in sorted(first_use.items(), key=lambda kv: name_of(*kv[0])):
        constraint = f" {check_currency(functional[entity])}" if view == "functional" and entity in functional else ""
        head.append(f"{opened.isoformat()} open {name_of(entity, code)}{constraint}")
    text_ = "\n".join([*head, *body, "", *assertions, ""])
    return BeancountExport(view, text_, assert_date, entries, len(assertions))


def _balance(day: date, account: str, amount: Decimal, currency: str, source: str) -> str:
    head = f"{day.isoformat()} balance {account}  {amount_text(amount, currency)} ~ 0 {currency}"
    return f"{head}\n  source: {quote(source)}"


def functional_path(out: Path) -> Path:
    """Where the functional-currency view goes next to ``out`` (``gl.beancount`` -> ``gl.functional.beancount``)."""
    return out.with_name(f"{out.stem}.functional{out.suffix or '.beancount'}")


def write_exports(engine: Engine, out: Path, *, as_of: date | None = None) -> list[tuple[Path, BeancountExport]]:
    """Both views from one consistent read: the transaction view to ``out``, the functional one beside it."""
    with engine.connect() as raw:
        conn = consistent_reads(raw)
        with conn.begin():
            day = resolve_as_of(conn, as_of)
            exports = [export_beancount(conn, view=v, as_of=day) for v in VIEWS]
    written = []
    for path, exp in zip((out, functional_path(out)), exports, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(exp.text, encoding="utf-8")
        written.append((path, exp))
    return written


def bean_check(path: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run beancount's ``bean-check`` on ``path`` (no cache: a stale cache must never hide a failure)."""
    return subprocess.run(
        [sys.executable, "-m", "beancount.scripts.check", "--no-cache", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
