"""The built-in SQL general ledger: chart of accounts, fiscal periods, posting, balances.

Posting is set-wise and idempotent: entries are inserted ``pending`` unless their idempotency key is there
already (:func:`insert_new`), their lines bulk-inserted, then flipped to ``posted`` in one UPDATE (the database
checks balance and period on that flip). A retried call posts nothing twice: the unique key, not Python, guarantees it.

On PostgreSQL each step is ONE statement whatever the number of entries (:func:`post_selected`; rows come from
``unnest`` arrays or from the caller's SELECT), because the integrity triggers run per statement: one statement is
one check, and an entry whose lines all arrive in one statement needs no re-check at COMMIT (migration 0002).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Connection,
    Selectable,
    TextualSelect,
    and_,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from writeoffs.accounting.chart import DEFAULT_CHART
from writeoffs.db import dialect
from writeoffs.db.schema import accounts, fiscal_periods, journal_entries, journal_lines, legal_entities
from writeoffs.errors import ClosedPeriod, LedgerError, PostedEntryImmutable, UnbalancedEntry
from writeoffs.journal import JournalEntry
from writeoffs.money import check_currency


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
    """Bulk INSERT ... ON CONFLICT (keys) DO NOTHING on either database; returns rows inserted."""
    if not rows:
        return 0
    stmt = dialect.of(conn).insert(table).on_conflict_do_nothing(index_elements=list(keys))
    result = conn.execute(stmt, list(rows))
    return max(result.rowcount or 0, 0)


def insert_new(conn: Connection, table, rows: Sequence[dict], keys: Sequence[str]) -> int:
    """Insert the rows whose ``keys`` are not in ``table`` yet (and the first of duplicates within ``rows``); returns
    rows inserted. Same outcome as :func:`upsert_ignore`, for the tables migration 0009 guards against SQLite's
    REPLACE (journal entries and lines, audit rows, fiscal periods): there every INSERT that collides with an existing
    row is refused, whatever its conflict clause (a trigger cannot tell ``ON CONFLICT DO NOTHING`` from ``OR
    REPLACE``), so SQLite is offered only new rows: ``INSERT ... SELECT ... WHERE NOT EXISTS`` per row, one
    executemany. PostgreSQL has no REPLACE: ``ON CONFLICT DO NOTHING`` there.
    """
    if not rows:
        return 0
    if not dialect.of(conn).conflicts_refused:
        return upsert_ignore(conn, table, rows, keys)
    params = {c: bindparam(c, type_=table.c[c].type) for c in rows[0]}
    missing = ~exists().where(and_(*(table.c[k] == params[k] for k in keys)))
    stmt = insert(table).from_select(list(params), select(*params.values()).where(missing))
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
    insert_new(
        conn,
        fiscal_periods,
        [
            {"entity_code": code, "period": p, "start_date": s, "end_date": e, "status": "open"}
            for p, s, e in month_periods(periods_from, periods_to)
        ],
        ["entity_code", "period"],
    )


def account_for_role(conn: Connection, entity: str, role: str) -> str:
    """The account playing ``role`` for ``entity`` (:mod:`writeoffs.accounting.chart`); refused when there is none."""
    from writeoffs.accounting.chart import resolve_accounts

    return resolve_accounts(conn, entity).role(role)


def close_period(conn: Connection, entity: str, period: str, *, actor: str) -> None:
    """Close an open period (audited). Closing is final: the database refuses any later change to a closed period
    (migration 0009), so there is no re-open; closing one already closed changes and records nothing."""
    from writeoffs import audit
    from writeoffs.period_seal import seal

    fp = fiscal_periods
    closed = conn.execute(
        update(fp)
        .where(fp.c.entity_code == entity, fp.c.period == period, fp.c.status == "open")
        .values(status="closed", closed_at=datetime.now(UTC), closed_by=actor)
    ).rowcount
    if not closed:
        if conn.execute(select(fp.c.status).where(fp.c.entity_code == entity, fp.c.period == period)).first():
            return
        raise LedgerError(f"fiscal period {period} of entity {entity} does not exist; nothing to close")
    # The seal: the period's totals, recorded in the (keyed, anchored) audit row; reconciliation re-checks them.
    audit.append(
        conn,
        actor=actor,
        action="period.close",
        object_type="fiscal_period",
        object_id=f"{entity}:{period}",
        details=seal(conn, entity, period),
    )


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


#: Columns an entry source provides to :func:`post_selected` (and their PostgreSQL types, for unnest arrays).
ENTRY_SOURCE_COLUMNS: dict[str, str] = {
    "idempotency_key": "varchar",
    "entity_code": "varchar",
    "posting_date": "date",
    "period": "varchar",
    "description": "varchar",
    "source_type": "varchar",
    "source_id": "varchar",
    "reverses_entry_id": "bigint",
    "policy_version": "varchar",
}
#: Columns a line source provides: the entry's idempotency key, then journal_lines' own columns.
LINE_SOURCE_COLUMNS: dict[str, str] = {
    "idempotency_key": "varchar",
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


def _refusals_translated(fn: Callable[[], PostResult]) -> PostResult:
    """Run a posting step; the database's refusals (``ledger:`` trigger messages) become named domain errors."""
    try:
        return fn()
    except (IntegrityError, DBAPIError) as exc:
        if "ledger:" in str(exc):
            raise translate(exc) from exc
        raise


def _unnest(columns: Mapping[str, str], data: Mapping[str, list]) -> TextualSelect:
    """``SELECT * FROM unnest(CAST(:col AS type[]), ...)``: column-wise Python data as rows, one parameter a column."""
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in columns.items())
    return (
        text(f"SELECT * FROM unnest({arrays}) AS u({', '.join(columns)})")
        .bindparams(**{c: data[c] for c in columns})
        .columns(*(column(c) for c in columns))
    )


def post_entries(
    conn: Connection, entries: Sequence[JournalEntry], *, created_by: str, batch_id: int | None = None
) -> PostResult:
    """Post entries in the caller's transaction. Idempotent per ``entry.key``.

    The caller owns the transaction: on any error nothing of the chunk stays (no half-posted batch).
    On PostgreSQL the entries travel as one array per column into :func:`post_selected` (a constant number of
    statements whatever the count); SQLite inserts them row-wise with the same protocol.
    """
    if not entries:
        return PostResult({}, {})
    check_periods_open(conn, entries)
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise LedgerError("duplicate idempotency keys within one posting call")
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
        wanted = {reverse_ids[e.reverses_key]: e.key for e in entries if e.reverses_key}
        taken = conn.execute(
            select(journal_entries.c.reverses_entry_id, journal_entries.c.idempotency_key).where(
                journal_entries.c.reverses_entry_id.in_(wanted)
            )
        ).all()
        twice = sorted(key for target, key in taken if wanted[target] != key)
        if twice:
            raise LedgerError(f"entries already reversed by {twice[:5]}: an entry is reversed once")
    entry_data: dict[str, list] = {
        "idempotency_key": keys,
        "entity_code": [e.entity for e in entries],
        "posting_date": [e.posting_date for e in entries],
        "period": [period_of(e.posting_date) for e in entries],
        "description": [e.description[:400] for e in entries],
        "source_type": [e.source_type for e in entries],
        "source_id": [e.source_id for e in entries],
        "reverses_entry_id": [reverse_ids.get(e.reverses_key) if e.reverses_key else None for e in entries],
        "policy_version": [e.meta.get("policy_version") for e in entries],
    }
    line_data: dict[str, list] = {c: [] for c in LINE_SOURCE_COLUMNS}
    for e in entries:
        for n, ln in enumerate(e.lines, start=1):
            line_data["idempotency_key"].append(e.key)
            line_data["line_no"].append(n)
            line_data["entity_code"].append(e.entity)
            line_data["account_code"].append(ln.account)
            line_data["currency"].append(ln.currency)
            line_data["debit"].append(ln.debit)
            line_data["credit"].append(ln.credit)
            line_data["functional_currency"].append(ln.functional_currency)
            line_data["functional_debit"].append(ln.functional_debit)
            line_data["functional_credit"].append(ln.functional_credit)
            line_data["invoice_id"].append(ln.invoice_id)
            line_data["memo"].append(ln.memo[:200] if ln.memo else None)
    if dialect.of(conn).arrays:
        return post_selected(
            conn,
            _unnest(ENTRY_SOURCE_COLUMNS, entry_data),
            _unnest(LINE_SOURCE_COLUMNS, line_data),
            created_by=created_by,
            batch_id=batch_id,
        )
    return _refusals_translated(lambda: _post_rowwise(conn, entry_data, line_data, created_by, batch_id))


def _post_rowwise(
    conn: Connection, entry_data: Mapping[str, list], line_data: Mapping[str, list], created_by: str, batch_id
) -> PostResult:
    """The posting protocol with executemany (SQLite: no arrays, and its executemany is cheap in-process)."""
    keys = entry_data["idempotency_key"]
    n = len(keys)
    insert_new(
        conn,
        journal_entries,
        [
            {
                **{c: entry_data[c][i] for c in ENTRY_SOURCE_COLUMNS},
                "status": "pending",
                "batch_id": batch_id,
                "created_by": created_by,
            }
            for i in range(n)
        ],
        ["idempotency_key"],
    )
    rows = conn.execute(
        select(journal_entries.c.idempotency_key, journal_entries.c.id, journal_entries.c.status).where(
            journal_entries.c.idempotency_key.in_(keys)
        )
    ).all()
    ids = {r.idempotency_key: r.id for r in rows}
    already = {r.idempotency_key: r.id for r in rows if r.status == "posted"}
    # A pending leftover (a crashed earlier attempt cannot leave one: it rolled back) is completed here.
    fresh = [ids[k] for k in keys if k not in already]
    if fresh:
        have_lines = set(
            conn.execute(
                select(journal_lines.c.entry_id).distinct().where(journal_lines.c.entry_id.in_(fresh))
            ).scalars()
        )
        line_rows = [
            {
                "entry_id": ids[key],
                **{c: line_data[c][i] for c in LINE_SOURCE_COLUMNS if c != "idempotency_key"},
            }
            for i, key in enumerate(line_data["idempotency_key"])
            if key not in already and ids[key] not in have_lines
        ]
        if line_rows:
            conn.execute(insert(journal_lines), line_rows)
        _flip(conn, fresh)
    return PostResult({k: ids[k] for k in keys if k not in already}, already)


def _flip(conn: Connection, entry_ids: Sequence[int]) -> None:
    """pending -> posted in ONE statement: the database checks balance, line count and period of them all at once."""
    je = journal_entries
    among = (
        je.c.id == any_(literal(list(entry_ids), dialect.ARRAY(BigInteger)))
        if dialect.of(conn).arrays
        else je.c.id.in_(entry_ids)
    )
    conn.execute(update(je).where(among, je.c.status == "pending").values(status="posted", posted_at=datetime.now(UTC)))


def post_selected(
    conn: Connection, entries: Selectable, lines: Selectable, *, created_by: str, batch_id: int | None = None
) -> PostResult:
    """Set-wise posting on PostgreSQL: the entry and line rows come from SELECTs evaluated by the database.

    ``entries`` yields one row per entry with the :data:`ENTRY_SOURCE_COLUMNS`; ``lines`` yields the
    :data:`LINE_SOURCE_COLUMNS`, tied to their entry by ``idempotency_key``. Same protocol and guarantees as
    :func:`post_entries` (which uses it with unnest arrays): entries are inserted ``pending`` with ``ON CONFLICT
    (idempotency_key) DO NOTHING``, lines are inserted for the pending ones that have none yet, then ONE UPDATE flips
    them to ``posted`` and the database checks balance, line count and open period. Nothing is rounded or checked
    for balance here: the source owns its amounts (see ``posting.build._journal_sources``); the database refuses an
    unbalanced result. A closed period is refused by the database too; callers check it first for a clearer message.
    """
    if not dialect.of(conn).arrays:
        raise LedgerError("post_selected needs PostgreSQL; use post_entries")
    return _refusals_translated(lambda: _post_selected(conn, entries, lines, created_by, batch_id))


def _post_selected(conn: Connection, entries, lines, created_by: str, batch_id: int | None) -> PostResult:
    je = journal_entries
    src = entries.cte("entry_source")
    cols = list(ENTRY_SOURCE_COLUMNS)
    inserted = (
        dialect.POSTGRESQL.insert(je)
        .from_select(
            [*cols, "status", "batch_id", "created_by"],
            select(
                *(src.c[c] for c in cols),
                literal("pending"),
                literal(batch_id, BigInteger),
                literal(created_by),
            ),
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(je.c.idempotency_key, je.c.id, je.c.status)
        .cte("inserted")
    )
    # One statement: the rows this INSERT wrote, plus the ones that were there before (the same snapshot does not
    # see the new rows, so nothing is listed twice).
    rows = conn.execute(
        select(inserted.c.idempotency_key, inserted.c.id, inserted.c.status, literal(True).label("new")).union_all(
            select(je.c.idempotency_key, je.c.id, je.c.status, literal(False)).join(
                src, src.c.idempotency_key == je.c.idempotency_key
            )
        )
    ).all()
    already = {r.idempotency_key: r.id for r in rows if r.status == "posted"}
    fresh = {r.idempotency_key: r.id for r in rows if r.status != "posted"}
    if not fresh:
        return PostResult({}, already)
    # A pending leftover (a crashed attempt cannot leave one: it rolled back) keeps the lines it has.
    leftovers = [r.id for r in rows if not r.new and r.status != "posted"]
    has_lines = set()
    if leftovers:
        has_lines = set(
            conn.execute(
                select(journal_lines.c.entry_id)
                .distinct()
                .where(journal_lines.c.entry_id == any_(literal(leftovers, dialect.ARRAY(BigInteger))))
            ).scalars()
        )
    need_lines = [i for i in fresh.values() if i not in has_lines]
    if need_lines:
        ln = lines.subquery("line_source")
        target = je.alias("target")
        line_cols = [c for c in LINE_SOURCE_COLUMNS if c != "idempotency_key"]
        conn.execute(
            insert(journal_lines).from_select(
                ["entry_id", *line_cols],
                select(target.c.id, *(ln.c[c] for c in line_cols))
                .select_from(ln.join(target, target.c.idempotency_key == ln.c.idempotency_key))
                .where(target.c.id == any_(literal(need_lines, dialect.ARRAY(BigInteger)))),
            )
        )
    _flip(conn, list(fresh.values()))
    return PostResult(fresh, already)


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
