"""PostgreSQL bulk-load mode for one transaction: FK triggers off, secondary indexes rebuilt, keys checked set-wise.

Measured on the sample seed and the 1M-invoice ingest: per-row foreign-key triggers and incremental maintenance of
non-unique indexes were most of the time of a large ``INSERT``/``COPY``. Bulk mode works like
``pg_restore --disable-triggers``, but inside the caller's transaction and without giving up a guarantee:

1. :func:`enter` - only if the loaded tables carry no triggers other than the internal FK ones (someone's trigger
   must see every row) and the role may ``SET LOCAL session_replication_role = replica``; optionally drops the
   non-unique secondary indexes after saving their exact definitions, and, for tables the caller names that are
   *empty*, their primary-key and unique constraints too (those no foreign key refers to).
2. the caller loads its rows.
3. :func:`leave` - ``session_replication_role`` back to ``origin``, constraints and indexes recreated from the saved
   definitions (a re-added key checks every loaded row at once: a duplicate raises :class:`DuplicateKeys`),
   the parents the load did not write locked ``FOR KEY SHARE`` (what the triggers would have done) and *every*
   foreign key of the loaded tables validated set-wise, one pass per table. An orphan raises :class:`OrphanRows` and the
   caller's transaction rolls everything back: the guarantee is the triggers', checked once per key instead of once
   per row.

``replica`` disables *all* ordinary triggers of the session, including the ledger's integrity triggers on the
journal tables: nothing may write a journal entry between :func:`enter` and :func:`leave`
(:func:`require_origin` lets posting code assert it). CHECK constraints always stay on; primary keys and unique
constraints stay on except on the empty tables named in ``rebuild_if_empty``, where they are checked set-wise when
re-added: building a key over a million rows costs a fraction of maintaining it row by row (measured at 1,000,000
invoices: the aging snapshot's 893,060 rows went in 3.08 s with their key and index kept, 1.83 s with both built
after; docs/ingestion.md). The caller names only tables whose load needs no key on the way (no ``ON CONFLICT``
on them between :func:`enter` and :func:`leave`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Table, text
from sqlalchemy.exc import DBAPIError

from writeoffs.db import dialect
from writeoffs.errors import LedgerError

#: ``work_mem`` for the ingestion's transactions (per hash/sort node): the default 4MB spills the million-row
#: aggregations and joins into temp files.
WORK_MEM = "128MB"


class OrphanRows(LedgerError):
    """Rows loaded with FK triggers off reference a missing parent; the transaction must roll back."""


class DuplicateKeys(LedgerError):
    """Rows loaded while a table's key was off repeat a key; the transaction must roll back."""


@dataclass(slots=True)
class BulkMode:
    """What :func:`enter` changed, so that :func:`leave` can undo and verify it."""

    tables: dict[str, Table]
    index_ddl: list[str] = field(default_factory=list)
    key_ddl: list[tuple[str, str, str]] = field(default_factory=list)  # (table, constraint, ALTER TABLE ... ADD)
    active: bool = True


def user_triggers(conn: Connection, tables: list[str]) -> int:
    """Triggers on ``tables`` (current schema) that replica mode would silence: not PostgreSQL's internal FK triggers
    and not the ``ENABLE ALWAYS`` ones (which fire in replica mode too, e.g. the invoice movements of migration 0013,
    so they still see every row)."""
    return conn.execute(
        text(
            "SELECT count(*) FROM pg_trigger tg JOIN pg_class t ON t.oid = tg.tgrelid "
            "WHERE t.relname = ANY(:tables) AND t.relnamespace = current_schema()::regnamespace "
            "AND NOT tg.tgisinternal AND tg.tgenabled <> 'A'"
        ),
        {"tables": tables},
    ).scalar_one()


def may_disable_triggers(conn: Connection) -> bool:
    """Whether this role may set ``session_replication_role`` (superuser, or granted SET on it)."""
    try:
        with conn.begin_nested():  # the probe is undone with its savepoint
            conn.execute(text("SET LOCAL session_replication_role = replica"))
    except DBAPIError:
        return False
    return True


def drop_secondary_indexes(conn: Connection, tables: list[str]) -> list[str]:
    """Drop the non-unique indexes of ``tables`` that back no constraint; returns their definitions."""
    rows = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = ANY(:tables) AND t.relnamespace = current_schema()::regnamespace "
            "AND NOT i.indisunique AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1"
        ),
        {"tables": tables},
    ).all()
    for name, _ddl in rows:
        conn.execute(text(f"DROP INDEX {name}"))
    return [ddl for _name, ddl in rows]


def empty_tables(conn: Connection, tables: list[str]) -> list[str]:
    """Those of ``tables`` that hold no row (visible to this transaction)."""
    return [t for t in tables if not conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {t})")).scalar()]


def drop_keys(conn: Connection, tables: list[str]) -> list[tuple[str, str, str]]:
    """Drop the primary-key and unique constraints of ``tables`` that no foreign key refers to; returns
    ``(table, constraint, DDL to re-add it)`` in a stable order. The statements are composed by the server
    (``format('%I')`` quotes the names) and sent as they are (no bind-parameter parsing of catalog text)."""
    rows = conn.execute(
        text(
            "SELECT t.relname, c.conname, format('ALTER TABLE %I DROP CONSTRAINT %I', t.relname, c.conname), "
            "format('ALTER TABLE %I ADD CONSTRAINT %I %s', t.relname, c.conname, pg_get_constraintdef(c.oid)) "
            "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "WHERE t.relname = ANY(:tables) AND t.relnamespace = current_schema()::regnamespace "
            "AND c.contype IN ('p', 'u') "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid) "
            "ORDER BY 1, 2"
        ),
        {"tables": tables},
    ).all()
    for _table, _name, drop, _add in rows:
        conn.exec_driver_sql(drop)
    return [(table, name, add) for table, name, _drop, add in rows]


def restore_keys(conn: Connection, key_ddl: list[tuple[str, str, str]], *, context: str) -> None:
    """Re-add the constraints :func:`drop_keys` dropped; a repeated key raises :class:`DuplicateKeys`."""
    for table, name, ddl in key_ddl:
        try:
            conn.exec_driver_sql(ddl)
        except DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)  # psycopg 3 / 2
            if code != "23505":  # unique_violation
                raise
            raise DuplicateKeys(f"{context}: rows of {table} repeat a key of {name}; nothing was loaded") from exc


def enter(
    conn: Connection,
    tables: Mapping[str, Table],
    *,
    drop_indexes: bool = True,
    keep_indexes: frozenset[str] = frozenset(),
    rebuild_if_empty: frozenset[str] = frozenset(),
) -> BulkMode | None:
    """Enter bulk mode for ``tables`` if it is safe; None means: load the normal way (slower, same result).

    ``keep_indexes`` names tables whose indexes stay (small tables whose indexes later statements of the load
    use: rebuilding them saves nothing). ``rebuild_if_empty`` names tables that, when they hold no row, lose all
    their indexes for the load - secondary ones and the primary-key and unique constraints no foreign key refers
    to - and get them back, checked, at :func:`leave` (see the module doc).
    """
    if not dialect.of(conn).bulk_copy:
        return None
    names = list(tables)
    if user_triggers(conn, names) or not may_disable_triggers(conn):
        return None
    conn.execute(text("SET LOCAL session_replication_role = replica"))
    # Sorting for the index rebuilds in memory rather than in temp files; for this transaction only.
    conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
    empty = empty_tables(conn, [n for n in names if n in rebuild_if_empty])
    drop = [n for n in names if n in empty or (drop_indexes and n not in keep_indexes)]
    key_ddl = drop_keys(conn, empty) if empty else []
    return BulkMode(dict(tables), drop_secondary_indexes(conn, drop) if drop else [], key_ddl)


def leave(
    conn: Connection,
    mode: BulkMode,
    *,
    context: str,
    where: Mapping[str, str] | None = None,
    table_locks: frozenset[str] = frozenset(),
    proven: frozenset[str] = frozenset(),
) -> None:
    """Triggers back on, indexes rebuilt, every foreign key of the loaded tables validated (see module doc).

    ``proven`` names loaded tables whose keys hold by construction and are not checked again: every key was copied
    from a parent row that no other transaction can remove before the commit - read from a parent locked
    (``SHARE``) before the copy (the aging snapshot), or written by this transaction itself (the staging rows' batch).
    Their parents are still locked here like any other.

    ``where`` narrows the check of a table to the rows the load could have written (an SQL condition on the
    child's columns, alias ``c``), e.g. one snapshot date of a table that keeps every date. ``table_locks`` names
    big parents to lock as a whole (``SHARE``: no writer until commit) instead of row by row.
    """
    if not mode.active:
        return
    conn.execute(text("SET LOCAL session_replication_role = origin"))
    mode.active = False
    restore_keys(conn, mode.key_ddl, context=context)
    for ddl in mode.index_ddl:
        conn.execute(text(ddl))
    lock_parents(conn, mode.tables, table_locks=table_locks)
    unproven = {name: table for name, table in mode.tables.items() if name not in proven}
    verify_foreign_keys(conn, unproven, context=context, where=where)


def lock_parents(conn: Connection, tables: Mapping[str, Table], *, table_locks: frozenset[str] = frozenset()) -> None:
    """Lock the referenced tables the load did not write, as the FK triggers would: nobody may delete a parent row
    before we commit. ``FOR KEY SHARE`` on every row, or for the parents in ``table_locks`` one ``SHARE`` lock (row
    locks on a million parents would dirty every page of the parent table, which is what we set out to avoid).
    A parent the load wrote itself is locked only if named in ``table_locks`` (its rows that existed before the
    load and that the load did not touch are otherwise unlocked)."""
    referred = {fk.referred_table.name for t in tables.values() for fk in t.foreign_key_constraints}
    for parent in sorted(referred):
        if parent in table_locks:
            conn.execute(text(f"LOCK TABLE {parent} IN SHARE MODE"))
        elif parent not in tables:
            conn.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM {parent} FOR KEY SHARE) AS locked"))


def verify_foreign_keys(
    conn: Connection, tables: Mapping[str, Table], *, context: str, where: Mapping[str, str] | None = None
) -> None:
    """Every foreign key of ``tables`` checked set-wise; raises :class:`OrphanRows` naming the first one that fails.

    One pass over each child table: a LEFT JOIN per foreign key (its parent columns are unique, so no row is
    duplicated) and one orphan count per key, instead of one scan per key.
    """
    for name, table in tables.items():
        fks = sorted(table.foreign_key_constraints, key=lambda k: (k.referred_table.name, [c.name for c in k.columns]))
        if not fks:
            continue
        joins, counts = [], []
        for k, fk in enumerate(fks):
            child_cols = [c.name for c in fk.columns]
            parent_cols = [e.column.name for e in fk.elements]
            match = " AND ".join(f"p{k}.{pc} = c.{cc}" for pc, cc in zip(parent_cols, child_cols, strict=True))
            joins.append(f"LEFT JOIN {fk.referred_table.name} p{k} ON {match}")
            present = " AND ".join(f"c.{col} IS NOT NULL" for col in child_cols)
            counts.append(f"count(*) FILTER (WHERE {present} AND p{k}.{parent_cols[0]} IS NULL)")
        extra = f" WHERE {where[name]}" if where and name in where else ""
        orphans = conn.execute(text(f"SELECT {', '.join(counts)} FROM {name} c {' '.join(joins)}{extra}")).one()
        for fk, n in zip(fks, orphans, strict=True):
            if n:
                raise OrphanRows(
                    f"{context}: {n:,} rows of {name} reference a missing {fk.referred_table.name} "
                    f"({', '.join(c.name for c in fk.columns)}); nothing was loaded"
                )


@contextmanager
def bulk_load(
    conn: Connection,
    tables: Mapping[str, Table],
    *,
    context: str,
    drop_indexes: bool = True,
    where: Mapping[str, str] | None = None,
    table_locks: frozenset[str] = frozenset(),
) -> Iterator[BulkMode | None]:
    """``with bulk_load(conn, tables, context=...) as mode:`` load; verified on normal exit (``mode`` None: normal
    mode). On an exception nothing is reset: the caller's transaction is going to roll back and that undoes the
    ``SET LOCAL`` and the dropped indexes with everything else."""
    mode = enter(conn, tables, drop_indexes=drop_indexes)
    yield mode
    if mode is not None:
        leave(conn, mode, context=context, where=where, table_locks=table_locks)


def set_local_work_mem(conn: Connection, value: str = WORK_MEM) -> None:
    """Raise ``work_mem`` for the rest of the caller's transaction only (PostgreSQL; a no-op elsewhere)."""
    dialect.set_local(conn, "work_mem", value)


def require_origin(conn: Connection) -> None:
    """Refuse to go on while FK and ledger triggers are off (call before writing journal entries)."""
    if dialect.of(conn).bulk_copy:  # where triggers can be switched off for a bulk load
        role = conn.execute(text("SHOW session_replication_role")).scalar_one()
        if role != "origin":
            raise LedgerError(f"session_replication_role is {role!r}: ledger triggers are off; refusing to post")
