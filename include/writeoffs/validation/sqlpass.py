"""Row-level checks counted set-wise in SQL, and the offending rows kept once for the quarantine.

GX evaluates a suite one expectation at a time: at a million rows that is one table scan (plus a sample query) per
expectation, and most of the validation time. Here every row-local predicate of a target is evaluated in *one*
scan (``WHERE p1 OR p2 OR ...``), and each set-wise predicate (a uniqueness semi-join, an anti-join on customers)
in one statement of its own, where the planner turns the EXISTS into a hash join. The rows found are written once,
as (target, reason, source row, raw row), into a temporary table: failure counts are a GROUP BY over it, the share
guard counts its distinct rows, and the quarantine copies from it instead of scanning staging a second time.

The predicates are the rules' own (``Rule.predicate``), the very text the quarantine always used; the GX
expectation comes from the same frozen rule. ``tests/integration/test_validation_fastpath.py`` runs both paths on
the same batches and asserts identical counts, findings and quarantined rows, on SQLite and PostgreSQL.

The temporary table belongs to one connection and one transaction: evaluate, quarantine and record on the same
``Connection`` (``validate_batches`` does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from writeoffs.db import dialect
from writeoffs.db.migrate import full_metadata
from writeoffs.db.money import ExactMoney, sqlite_decimal_text_sql
from writeoffs.validation.checks import Check, Scope
from writeoffs.validation.rules import ROW, Between, InSet, NotNull, Rule, sql_literal

log = logging.getLogger(__name__)

#: Offending values shown per failed check in the report (GX's ``partial_unexpected_count`` in the GX path).
SAMPLE = 10


@dataclass(frozen=True, slots=True)
class RowCounts:
    """What one SQL evaluation of a target's row-level checks found (the GX report is built from it)."""

    rows: int  # rows of the target (GX's element_count)
    offending: dict[str, int]  # check name -> offending rows
    considered: dict[str, int]  # check name -> rows the rule looks at (non-missing); absent: every row
    samples: dict[str, list[Any]] = field(default_factory=dict)  # check name -> a few offending values


def raw_json(conn: Connection, table: str) -> str:
    """SQL for the whole staged row as JSON text (the quarantine's ``raw``)."""
    if dialect.of(conn).row_json:
        return f"CAST(row_to_json({ROW}) AS TEXT)"
    cols = [r[1] for r in conn.execute(text(f"PRAGMA table_info({table})"))]
    known = full_metadata().tables.get(table)
    money = {c.name for c in known.c if isinstance(c.type, ExactMoney)} if known is not None else set()

    def value(c: str) -> str:
        # Money as its exact decimal number (stored as integer ten-thousandths, see writeoffs.db.money).
        return f"json({sqlite_decimal_text_sql(f'{ROW}.{c}')})" if c in money else f"{ROW}.{c}"

    return "json_object(" + ", ".join(f"'{c}', {value(c)}" for c in cols) + ")"


def analyze_if_stale(conn: Connection, tables: Sequence[str], *, share: float = 0.1) -> list[str]:
    """ANALYZE staging tables whose statistics predate most of their rows (PostgreSQL; returns the tables analyzed).

    A batch is COPYed into staging moments before it is validated, sooner than autovacuum notices; without
    statistics the planner can pick a nested loop for the uniqueness and customer joins, which at a million rows
    turns seconds into hours. Fresh statistics cost ~0.3 s for 1.3M rows; current ones cost nothing.
    """
    if not dialect.of(conn).statistics:
        return []
    stale = []
    for table in dict.fromkeys(tables):
        row = conn.execute(
            text(
                "SELECT s.n_live_tup, s.n_mod_since_analyze, COALESCE(s.last_analyze, s.last_autoanalyze) AS analyzed"
                " FROM pg_stat_user_tables s WHERE s.relid = to_regclass(:t)"
            ),
            {"t": table},
        ).first()
        if row is None or row.analyzed is None or row.n_mod_since_analyze > share * max(row.n_live_tup, 1):
            conn.execute(text(f"ANALYZE {table}"))
            stale.append(table)
    return stale


class BadRows:
    """The offending (row, reason) pairs of one validation run, in a temporary table of ``conn``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.db = dialect.of(conn)
        self.table = self.db.temp("wo_validation_bad")
        conn.execute(text(f"DROP TABLE IF EXISTS {self.table}"))
        conn.execute(
            text(
                self.db.create_temp(
                    self.table,
                    "target INTEGER NOT NULL, reason VARCHAR(32) NOT NULL,"
                    " source_file VARCHAR(300) NOT NULL, source_row INTEGER NOT NULL, raw TEXT",
                )
            )
        )

    def drop(self) -> None:
        self.conn.execute(text(f"DROP TABLE IF EXISTS {self.table}"))

    def collect(self, target: int, scope: Scope, checks: Sequence[tuple[Check, Rule]]) -> str | None:
        """Record every row of ``scope`` offending one of the row-level ``checks`` (all of them, whatever their
        outcome elsewhere): one scan for the row-local predicates, one statement per set-wise one.

        Returns None, or why the predicates cannot run on this table (a missing column, a wrong type): then nothing
        is recorded for the target, and the structural checks, which GX evaluates, say what is wrong with it.
        """
        # A savepoint on PostgreSQL, where a failed statement aborts the transaction; SQLite fails such a statement
        # when preparing it, and undoes a statement that fails half-way by itself.
        guard = self.conn.begin_nested() if self.db.errors_abort_transaction else nullcontext()
        try:
            with guard:
                self._collect(target, scope, checks)
        except DBAPIError as exc:
            self.conn.execute(text(f"DELETE FROM {self.table} WHERE target = :t"), {"t": target})
            return str(exc.orig).splitlines()[0]
        return None

    def _collect(self, target: int, scope: Scope, checks: Sequence[tuple[Check, Rule]]) -> None:
        table, where = scope.table, scope.filter_sql(ROW)
        raw = raw_json(self.conn, table)
        insert = f"INSERT INTO {self.table} (target, reason, source_file, source_row, raw)"
        local = [(c, r) for c, r in checks if r.scope == "row" and not r.set_wise]
        if local:
            flags = ", ".join(
                f"CASE WHEN {r.predicate(ROW)} THEN 1 ELSE 0 END AS f{i}" for i, (_, r) in enumerate(local)
            )
            any_bad = " OR ".join(f"({r.predicate(ROW)})" for _, r in local)
            # A CTE read once per check: materialised (PostgreSQL does so for a CTE used more than once), so the
            # staging table is scanned once whatever the number of checks.
            unpivot = " UNION ALL ".join(
                f"SELECT {int(target)}, {sql_literal(c.rule_name)}, source_file, source_row, raw FROM c WHERE f{i} = 1"
                for i, (c, _) in enumerate(local)
            )
            self.conn.execute(
                text(
                    f"WITH c AS (SELECT {ROW}.source_file, {ROW}.source_row, {raw} AS raw, {flags}"
                    f" FROM {table} {ROW} WHERE {where} AND ({any_bad})) {insert} {unpivot}"
                )
            )
        for c, r in checks:
            if r.scope == "row" and r.set_wise:
                self.conn.execute(
                    text(
                        f"{insert} SELECT {int(target)}, {sql_literal(c.rule_name)}, {ROW}.source_file,"
                        f" {ROW}.source_row, {raw} FROM {table} {ROW} WHERE {where} AND ({r.predicate(ROW)})"
                    )
                )

    def counts(self, target: int, scope: Scope, checks: Sequence[tuple[Check, Rule]]) -> RowCounts:
        """Failure counts of ``checks`` (collected before), the target's size, and samples for the report."""
        considered = [(c, cond) for c, r in checks if (cond := r.considered(ROW)) is not None]
        sums = "".join(f", SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)" for _, cond in considered)
        stats = self.conn.execute(
            text(f"SELECT COUNT(*){sums} FROM {scope.table} {ROW} WHERE {scope.filter_sql(ROW)}")
        ).one()
        by_reason = dict(
            self.conn.execute(
                text(f"SELECT reason, COUNT(*) FROM {self.table} WHERE target = :t GROUP BY reason"), {"t": target}
            ).all()
        )
        offending = {c.name: int(by_reason.get(c.rule_name, 0)) for c, _ in checks}
        samples = {}
        for c, r in checks:
            if offending[c.name] and isinstance(r, (Between, InSet, NotNull)):
                raws = self.conn.execute(
                    text(
                        f"SELECT raw FROM {self.table} WHERE target = :t AND reason = :r"
                        f" ORDER BY source_file, source_row LIMIT {SAMPLE}"
                    ),
                    {"t": target, "r": c.rule_name},
                ).scalars()
                samples[c.name] = [_value(json.loads(x, parse_float=Decimal).get(r.column)) for x in raws]
        return RowCounts(
            rows=int(stats[0]),
            offending=offending,
            considered={c.name: int(stats[i + 1] or 0) for i, (c, _) in enumerate(considered)},
            samples=samples,
        )

    def distinct_rows(self, target: int, reasons: Sequence[str]) -> int:
        """Rows offending any of ``reasons``: a row failing two checks counts once."""
        return int(
            self.conn.execute(
                text(
                    f"SELECT COUNT(*) FROM (SELECT DISTINCT source_file, source_row FROM {self.table}"
                    f" WHERE target = :t AND reason IN ({_in(reasons)})) u"
                ),
                {"t": target},
            ).scalar_one()
        )

    def quarantine(self, target: int, scope: Scope, checks: Sequence[Check]) -> dict[str, int]:
        """Copy the rows offending ``checks`` to ``ingest_quarantine`` (one row per row and reason)."""
        per_reason = {}
        for check in checks:
            n = self.conn.execute(
                text(
                    "INSERT INTO ingest_quarantine"
                    " (batch_id, dataset, source_file, source_row, field, reason, message, raw)"
                    f" SELECT :b, :ds, source_file, source_row, :fld, reason, :msg, raw FROM {self.table}"
                    " WHERE target = :t AND reason = :reason"
                ),
                {
                    "b": scope.batch_id,
                    "t": target,
                    "ds": scope.dataset,
                    "fld": check.column,
                    "reason": check.rule_name,
                    "msg": f"validation warning {check.name}: {check.description}",
                },
            ).rowcount
            per_reason[check.rule_name] = n or 0
        return per_reason

    def remove(self, target: int, scope: Scope, reasons: Sequence[str]) -> None:
        """Delete the quarantined rows from staging (one set-wise DELETE, a hash semi-join on PostgreSQL)."""
        table = scope.table
        self.conn.execute(
            text(
                f"DELETE FROM {table} WHERE {scope.filter_sql(table)} AND EXISTS (SELECT 1 FROM {self.table} q"
                f" WHERE q.target = :t AND q.reason IN ({_in(reasons)})"
                f" AND q.source_file = {table}.source_file AND q.source_row = {table}.source_row)"
            ),
            {"t": target},
        )


def _in(values: Sequence[str]) -> str:
    return ", ".join(sql_literal(v) for v in values)


def _value(v: Any) -> Any:
    # Amounts arrive as Decimal (never float); the report shows them as text, like dates.
    return str(v) if isinstance(v, Decimal) else v
