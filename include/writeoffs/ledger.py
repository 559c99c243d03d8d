"""The built-in SQL general ledger: chart of accounts, fiscal periods, posting, balances.

Posting is set-wise and idempotent: entries are inserted ``pending`` with ``ON CONFLICT (idempotency_key) DO
NOTHING``, their lines bulk-inserted, then flipped to ``posted`` in one UPDATE (the database checks balance and
period on that flip). A retried call posts nothing twice: the unique key, not Python, guarantees it.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    Table,
    TextClause,
    any_,
    false,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError

from writeoffs.db.schema import accounts, fiscal_periods, journal_entries, journal_lines, legal_entities
from writeoffs.errors import ClosedPeriod, LedgerError, PostedEntryImmutable, UnbalancedEntry
from writeoffs.journal import JournalEntry
from writeoffs.money import check_currency

#: Default chart of accounts created for a new entity: (code, name, type, role).
DEFAULT_CHART: tuple[tuple[str, str, str, str | None], ...] = (
    ("1000", "Cash", "asset", "cash"),
    ("1100", "Accounts Receivable (control)", "asset", "ar_control"),
    ("1190", "Allowance for Doubtful Accounts", "contra_asset", "allowance"),
    ("2990", "Suspense", "liability", "suspense"),
    ("4900", "Bad Debt Recovery Income", "income", "recovery_income"),
    ("6100", "Bad Debt Expense", "expense", "bad_debt_expense"),
    ("6110", "Bad Debt Expense - Bankruptcy", "expense", None),
    ("6120", "Bad Debt Expense - Small Balances", "expense", None),
    ("6130", "Bad Debt Expense - Settlements and Disputes", "expense", None),
)


def period_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_periods(first: date, last: date) -> list[tuple[str, date, date]]:
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        end = date(y, m, calendar.monthrange(y, m)[1])
        out.append((f"{y:04d}-{m:02d}", date(y, m, 1), end))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def upsert_ignore(conn: Connection, table, rows: Sequence[dict], keys: Sequence[str]) -> int:
    """Bulk INSERT ... ON CONFLICT (keys) DO NOTHING on either dialect; returns rows inserted."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    result = conn.execute(stmt, list(rows))
    return max(result.rowcount or 0, 0)


def bootstrap_entity(
    conn: Connection,
    *,
    code: str,
    name: str,
    functional_currency: str,
    method: str = "direct",
    periods_from: date,
    periods_to: date,
) -> None:
    """Create (idempotently) an entity with the default chart of accounts and open monthly periods."""
    upsert_ignore(
        conn,
        legal_entities,
        [
            {
                "code": code,
                "name": name,
                "functional_currency": check_currency(functional_currency),
                "writeoff_method": method,
            }
        ],
        ["code"],
    )
    upsert_ignore(
        conn,
        accounts,
        [{"entity_code": code, "code": c, "name": n, "account_type": t, "role": r} for c, n, t, r in DEFAULT_CHART],
        ["entity_code", "code"],
    )
    upsert_ignore(
        conn,
        fiscal_periods,
        [
            {"entity_code": code, "period": p, "start_date": s, "end_date": e, "status": "open"}
            for p, s, e in month_periods(periods_from, periods_to)
        ],
        ["entity_code", "period"],
    )


def account_for_role(conn: Connection, entity: str, role: str) -> str:
    code = conn.execute(
        select(accounts.c.code).where(accounts.c.entity_code == entity, accounts.c.role == role)
    ).scalar()
    if code is None:
        raise LedgerError(f"entity {entity} has no account with role {role!r} in its chart of accounts")
    return code


def close_period(conn: Connection, entity: str, period: str, *, actor: str) -> None:
    from writeoffs import audit

    conn.execute(
        update(fiscal_periods)
        .where(fiscal_periods.c.entity_code == entity, fiscal_periods.c.period == period)
        .values(status="closed", closed_at=datetime.now(UTC), closed_by=actor)
    )
    audit.append(conn, actor=actor, action="period.close", object_type="fiscal_period", object_id=f"{entity}:{period}")


def check_periods_open(conn: Connection, entries: Iterable[JournalEntry]) -> None:
    """Refuse, with a clear message, entries whose posting date falls in a closed or missing period."""
    wanted = {(e.entity, period_of(e.posting_date)) for e in entries}
    if not wanted:
        return
    rows = conn.execute(
        select(fiscal_periods.c.entity_code, fiscal_periods.c.period, fiscal_periods.c.status).where(
            fiscal_periods.c.entity_code.in_({w[0] for w in wanted})
        )
    ).all()
    status = {(r.entity_code, r.period): r.status for r in rows}
    for entity, period in sorted(wanted):
        st = status.get((entity, period))
        if st != "open":
            what = "is closed" if st == "closed" else "does not exist"
            raise ClosedPeriod(
                f"fiscal period {period} of entity {entity} {what}; posting refused (entries are never re-dated)"
            )


def translate(exc: DBAPIError) -> LedgerError:
    """Map the database's refusal (trigger messages start with ``ledger:``) to a named domain error."""
    msg = str(exc.orig) if exc.orig is not None else str(exc)
    first = msg.splitlines()[0]
    if "unbalanced" in msg:
        return UnbalancedEntry(first)
    if "immutable" in msg or "append-only" in msg:
        return PostedEntryImmutable(first)
    if "period" in msg and "closed" in msg:
        return ClosedPeriod(first)
    return LedgerError(first)


@dataclass(frozen=True, slots=True)
class PostResult:
    posted: dict[str, int]  # idempotency key -> entry id, for entries posted by this call
    already: dict[str, int]  # keys that were posted before (idempotent replay)


#: Columns written by :func:`post_entries`, with the PostgreSQL array type each is shipped as.
_ENTRY_COLUMNS: dict[str, str] = {
    "idempotency_key": "varchar",
    "entity_code": "varchar",
    "posting_date": "date",
    "period": "varchar",
    "status": "varchar",
    "description": "varchar",
    "source_type": "varchar",
    "source_id": "varchar",
    "reverses_entry_id": "bigint",
    "batch_id": "bigint",
    "policy_version": "varchar",
    "created_by": "varchar",
}
_LINE_COLUMNS: dict[str, str] = {
    "entry_id": "bigint",
    "line_no": "integer",
    "entity_code": "varchar",
    "account_code": "varchar",
    "currency": "varchar",
    "debit": "numeric",
    "credit": "numeric",
    "functional_currency": "varchar",
    "functional_debit": "numeric",
    "functional_credit": "numeric",
    "invoice_id": "bigint",
    "memo": "varchar",
}


def _unnest_insert(table: str, columns: Mapping[str, str], on_conflict: str = "") -> TextClause:
    """``INSERT INTO table (cols) SELECT * FROM unnest(:col1::type[], ...)``: one statement for any row count.

    One statement matters twice on PostgreSQL: the per-row cost of an executemany (psycopg runs it as one statement
    per parameter set) is gone, and the statement-level integrity triggers of migration 0002 fire once and see a
    whole chunk, so an entry's lines never straddle two statements (which would queue a re-check at COMMIT).
    """
    cols = ", ".join(columns)
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in columns.items())
    return text(f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({arrays}) {on_conflict}")


def _bulk_insert(
    conn: Connection, table: Table, columns: Mapping[str, str], data: Mapping[str, list], keys: Sequence[str] = ()
) -> None:
    """Insert column-wise ``data`` (column -> values): unnest arrays on PostgreSQL, executemany on SQLite."""
    if not data[next(iter(columns))]:
        return
    if conn.dialect.name == "postgresql":
        conflict = f"ON CONFLICT ({', '.join(keys)}) DO NOTHING" if keys else ""
        conn.execute(_unnest_insert(table.name, columns, conflict), dict(data))
        return
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*(data[c] for c in columns), strict=True)]
    if keys:
        upsert_ignore(conn, table, rows, keys)
    else:
        conn.execute(insert(table), rows)


def _among(column, values: Sequence, type_) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``: one parameter instead of one per value."""
    if not values:
        return false()
    return column == any_(literal(list(values), ARRAY(type_)))


def post_entries(
    conn: Connection, entries: Sequence[JournalEntry], *, created_by: str, batch_id: int | None = None
) -> PostResult:
    """Post entries in the caller's transaction. Idempotent per ``entry.key``.

    The caller owns the transaction: on any error nothing of the chunk stays (no half-posted batch).
    Four set-wise statements whatever the number of entries: insert entries ``pending`` (``ON CONFLICT DO
    NOTHING`` on the key), read back ids and statuses, insert the lines, flip to ``posted`` (the database checks
    balance, line count and period on that flip).
    """
    if not entries:
        return PostResult({}, {})
    check_periods_open(conn, entries)
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise LedgerError("duplicate idempotency keys within one posting call")
    pg = conn.dialect.name == "postgresql"

    def among(column, values: Sequence, type_) -> ColumnElement[bool]:
        return _among(column, values, type_) if pg else column.in_(values)

    reverses = {e.reverses_key for e in entries if e.reverses_key}
    reverse_ids: dict[str, int] = {}
    if reverses:
        reverse_ids = dict(
            conn.execute(
                select(journal_entries.c.idempotency_key, journal_entries.c.id).where(
                    journal_entries.c.idempotency_key.in_(reverses), journal_entries.c.status == "posted"
                )
            ).all()
        )
        missing = reverses - reverse_ids.keys()
        if missing:
            raise LedgerError(f"cannot reverse entries that are not posted: {sorted(missing)[:5]}")
    try:
        _bulk_insert(
            conn,
            journal_entries,
            _ENTRY_COLUMNS,
            {
                "idempotency_key": keys,
                "entity_code": [e.entity for e in entries],
                "posting_date": [e.posting_date for e in entries],
                "period": [period_of(e.posting_date) for e in entries],
                "status": ["pending"] * len(entries),
                "description": [e.description[:400] for e in entries],
                "source_type": [e.source_type for e in entries],
                "source_id": [e.source_id for e in entries],
                "reverses_entry_id": [reverse_ids.get(e.reverses_key) if e.reverses_key else None for e in entries],
                "batch_id": [batch_id] * len(entries),
                "policy_version": [e.meta.get("policy_version") for e in entries],
                "created_by": [created_by] * len(entries),
            },
            ["idempotency_key"],
        )
        rows = conn.execute(
            select(journal_entries.c.idempotency_key, journal_entries.c.id, journal_entries.c.status).where(
                among(journal_entries.c.idempotency_key, keys, String)
            )
        ).all()
        ids = {r.idempotency_key: r.id for r in rows}
        already = {r.idempotency_key: r.id for r in rows if r.status == "posted"}
        # A pending leftover (a crashed earlier attempt cannot leave one: it rolled back) is completed here.
        fresh = [e for e in entries if e.key not in already]
        if fresh:
            fresh_ids = [ids[e.key] for e in fresh]
            have_lines = set(
                conn.execute(
                    select(journal_lines.c.entry_id)
                    .distinct()
                    .where(among(journal_lines.c.entry_id, fresh_ids, BigInteger))
                ).scalars()
            )
            lines: dict[str, list] = {c: [] for c in _LINE_COLUMNS}
            for e in fresh:
                eid = ids[e.key]
                if eid in have_lines:
                    continue
                for n, ln in enumerate(e.lines, start=1):
                    lines["entry_id"].append(eid)
                    lines["line_no"].append(n)
                    lines["entity_code"].append(e.entity)
                    lines["account_code"].append(ln.account)
                    lines["currency"].append(ln.currency)
                    lines["debit"].append(ln.debit)
                    lines["credit"].append(ln.credit)
                    lines["functional_currency"].append(ln.functional_currency)
                    lines["functional_debit"].append(ln.functional_debit)
                    lines["functional_credit"].append(ln.functional_credit)
                    lines["invoice_id"].append(ln.invoice_id)
                    lines["memo"].append(ln.memo[:200] if ln.memo else None)
            _bulk_insert(conn, journal_lines, _LINE_COLUMNS, lines)
            conn.execute(
                update(journal_entries)
                .where(among(journal_entries.c.id, fresh_ids, BigInteger), journal_entries.c.status == "pending")
                .values(status="posted", posted_at=datetime.now(UTC))
            )
    except (IntegrityError, DBAPIError) as exc:
        if "ledger:" in str(exc):
            raise translate(exc) from exc
        raise
    return PostResult({e.key: ids[e.key] for e in fresh}, already)


def account_balance(
    conn: Connection, entity: str, account_code: str, currency: str | None = None, as_of: date | None = None
) -> Decimal:
    """Posted debit - credit on an account (transaction currency when given, else functional)."""
    amt = (
        journal_lines.c.debit - journal_lines.c.credit
        if currency
        else journal_lines.c.functional_debit - journal_lines.c.functional_credit
    )
    q = (
        select(func.coalesce(func.sum(amt), 0))
        .select_from(journal_lines.join(journal_entries, journal_entries.c.id == journal_lines.c.entry_id))
        .where(
            journal_entries.c.status == "posted",
            journal_lines.c.entity_code == entity,
            journal_lines.c.account_code == account_code,
        )
    )
    if currency:
        q = q.where(journal_lines.c.currency == currency)
    if as_of:
        q = q.where(journal_entries.c.posting_date <= as_of)
    return Decimal(str(conn.execute(q).scalar_one())).quantize(Decimal("0.0001"))
