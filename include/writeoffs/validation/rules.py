"""Rules: one declarative description rendered two ways, as a GX expectation and as a SQL predicate.

The GX expectation produces the evaluated/failed counts and the Data Docs; the SQL predicate (true for an
*offending* row) selects exactly the rows to quarantine. Both are derived from the same fields of the same frozen
object, so they cannot drift apart; ``tests/integration/test_validation_checks.py`` proves, check by check, that
GX's unexpected count equals the number of rows the predicate selects.

Null handling follows GX: value checks ignore NULLs (a missing value is the ``not_null`` check's business), so a
NULL never fails two checks at once and is quarantined under the one name that explains it.

Great Expectations is imported inside :meth:`Rule.expectation` only: it takes seconds to import, and this module is
imported by DAG files at parse time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol

Literal_ = str | int | Decimal | date

#: The alias the staged row has in every predicate and unexpected-rows query.
ROW = "s"


def sql_literal(value: Literal_) -> str:
    """Render a literal for SQL text shared with GX (which takes no bind parameters in unexpected-rows queries).

    Only typed values we produced ourselves reach here (dates, Decimals, ints, ISO codes), never free text from a
    source; quotes are escaped anyway.
    """
    if isinstance(value, bool):
        raise TypeError("booleans are not rendered as SQL literals")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"non-finite amount {value!r}")
        return format(value, "f")
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def col(name: str, alias: str = ROW) -> str:
    return f"{alias}.{name}"


class Rule(Protocol):
    #: "row": offending rows can be named (and quarantined); "batch": the batch as a whole passes or fails.
    scope: Literal["row", "batch"]
    #: The predicate reads other rows (a semi- or anti-join): it must stand at the top of a WHERE clause, where the
    #: planner turns it into a hash join. Row-local predicates are evaluated together in one scan
    #: (``writeoffs.validation.sqlpass``), where an EXISTS would become a per-row sub-plan.
    set_wise: bool

    def predicate(self, alias: str = ROW) -> str:
        """SQL condition, true for an offending row (row rules) — batch rules raise NotImplementedError."""
        ...

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        """The GX 1.x expectation object."""
        ...

    def considered(self, alias: str = ROW) -> str | None:
        """SQL condition for a row the rule looks at (GX's non-missing rows), None when every row is; row rules only.

        Only for the report's percentages; the offending rows are the predicate's business.
        """
        ...


@dataclass(frozen=True, slots=True)
class NotNull:
    column: str
    scope: Literal["row"] = "row"
    set_wise: bool = False

    def predicate(self, alias: str = ROW) -> str:
        return f"{col(self.column, alias)} IS NULL"

    def considered(self, alias: str = ROW) -> str | None:
        return None

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectColumnValuesToNotBeNull(column=self.column, description=description, meta=meta)


@dataclass(frozen=True, slots=True)
class Between:
    """``min_value <= column <= max_value`` (either bound optional), NULLs ignored."""

    column: str
    min_value: Literal_ | None = None
    max_value: Literal_ | None = None
    scope: Literal["row"] = "row"
    set_wise: bool = False

    def considered(self, alias: str = ROW) -> str | None:
        return f"{col(self.column, alias)} IS NOT NULL"

    def predicate(self, alias: str = ROW) -> str:
        c = col(self.column, alias)
        outside = []
        if self.min_value is not None:
            outside.append(f"{c} < {sql_literal(self.min_value)}")
        if self.max_value is not None:
            outside.append(f"{c} > {sql_literal(self.max_value)}")
        return f"{c} IS NOT NULL AND ({' OR '.join(outside)})"

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        def gx_value(v: Literal_ | None) -> Any:
            # GX serialises expectation kwargs to JSON: dates as ISO strings (compared as dates by the database),
            # amounts as exact strings would be compared as text, so integral bounds stay ints.
            if isinstance(v, date):
                return v.isoformat()
            if isinstance(v, Decimal):
                if v != v.to_integral_value():
                    raise ValueError("fractional money bounds are not used by any check; keep bounds integral")
                return int(v)
            return v

        return gxe.ExpectColumnValuesToBeBetween(
            column=self.column,
            min_value=gx_value(self.min_value),
            max_value=gx_value(self.max_value),
            description=description,
            meta=meta,
        )


@dataclass(frozen=True, slots=True)
class AtLeast:
    """``column_a >= column_b`` on each row where both are present."""

    column_a: str
    column_b: str
    scope: Literal["row"] = "row"
    set_wise: bool = False

    def considered(self, alias: str = ROW) -> str | None:
        return f"{col(self.column_a, alias)} IS NOT NULL AND {col(self.column_b, alias)} IS NOT NULL"

    def predicate(self, alias: str = ROW) -> str:
        a, b = col(self.column_a, alias), col(self.column_b, alias)
        return f"{a} IS NOT NULL AND {b} IS NOT NULL AND {a} < {b}"

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=self.column_a,
            column_B=self.column_b,
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            description=description,
            meta=meta,
        )


@dataclass(frozen=True, slots=True)
class InSet:
    column: str
    values: tuple[str, ...]
    scope: Literal["row"] = "row"
    set_wise: bool = False

    def considered(self, alias: str = ROW) -> str | None:
        return f"{col(self.column, alias)} IS NOT NULL"

    def predicate(self, alias: str = ROW) -> str:
        c = col(self.column, alias)
        if not self.values:
            return f"{c} IS NOT NULL"
        return f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(sql_literal(v) for v in self.values)})"

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectColumnValuesToBeInSet(
            column=self.column, value_set=list(self.values), description=description, meta=meta
        )


@dataclass(frozen=True, slots=True)
class UniqueKey:
    """No two rows of the batch share the key; every copy of a repeated key offends (none of them is "the" right one).

    ``scope_sql`` restricts the duplicate search to the batch (the same filter as the GX query asset's), written
    with ``{a}`` for the alias; ``row_key`` tells two rows apart (source file and row number).
    Rows with a missing key column are ignored by both renderings (``any_value_is_missing``): a missing key is the
    ``not_null`` check's finding, and SQL equality cannot match NULLs anyway.
    """

    columns: tuple[str, ...]
    table: str
    scope_sql: str
    row_key: tuple[str, ...]
    scope: Literal["row"] = "row"
    set_wise: bool = True

    def considered(self, alias: str = ROW) -> str | None:
        return " AND ".join(f"{col(c, alias)} IS NOT NULL" for c in self.columns)

    def predicate(self, alias: str = ROW) -> str:
        present = " AND ".join(f"{col(c, alias)} IS NOT NULL" for c in self.columns)
        same = " AND ".join(f"d.{c} = {col(c, alias)}" for c in self.columns)
        other = " AND ".join(f"d.{c} = {col(c, alias)}" for c in self.row_key)
        # EXISTS on another row with the same key: a semi-join the planner runs as one hash join, not a row loop.
        return (
            f"{present} AND EXISTS (SELECT 1 FROM {self.table} d WHERE {self.scope_sql.format(a='d')} "
            f"AND {same} AND NOT ({other}))"
        )

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectCompoundColumnsToBeUnique(
            column_list=list(self.columns),
            ignore_row_if="any_value_is_missing",
            description=description,
            meta=meta,
        )


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A check with no native GX expectation (referential integrity, consistency with a rule in our code).

    ``condition`` is the predicate itself; GX runs ``SELECT ... WHERE condition`` as an UnexpectedRowsExpectation,
    the quarantine runs the same condition.
    """

    condition: str  # refers to the row as ``{a}``
    scope: Literal["row"] = "row"
    #: True unless the condition reads the row alone (a subquery, a join): the safe default, since a row-local
    #: condition evaluated on its own costs one extra scan, a set-wise one inside an expression a scan per row.
    set_wise: bool = True

    def considered(self, alias: str = ROW) -> str | None:
        return None

    def predicate(self, alias: str = ROW) -> str:
        return self.condition.format(a=alias)

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        # The batch is wrapped once more so our alias applies whatever GX substitutes for {batch}
        # (a table name or an aliased subquery).
        query = f"SELECT {ROW}.* FROM (SELECT * FROM {{batch}}) AS {ROW} WHERE {self.predicate(ROW)}"
        return gxe.UnexpectedRowsExpectation(unexpected_rows_query=query, description=description, meta=meta)


@dataclass(frozen=True, slots=True)
class ColumnsPresent:
    columns: tuple[str, ...]
    scope: Literal["batch"] = "batch"
    set_wise: bool = False

    def predicate(self, alias: str = ROW) -> str:
        raise NotImplementedError("a batch-level rule names no rows")

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectTableColumnsToMatchSet(
            column_set=list(self.columns), exact_match=False, description=description, meta=meta
        )


@dataclass(frozen=True, slots=True)
class ColumnTypes:
    """Each column's database type is one of the accepted type names (e.g. DATE; NUMERIC/DECIMAL)."""

    types: tuple[tuple[str, tuple[str, ...]], ...]
    scope: Literal["batch"] = "batch"
    set_wise: bool = False

    def predicate(self, alias: str = ROW) -> str:
        raise NotImplementedError("a batch-level rule names no rows")

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        raise NotImplementedError("one GX expectation per column: use expectations()")

    def expectations(self, *, description: str, meta: dict[str, Any]) -> list[Any]:
        import great_expectations.expectations as gxe

        return [
            gxe.ExpectColumnValuesToBeInTypeList(
                column=c, type_list=list(names), description=f"{description}: {c}", meta=meta
            )
            for c, names in self.types
        ]


@dataclass(frozen=True, slots=True)
class RowCountEquals:
    expected: int
    scope: Literal["batch"] = "batch"
    set_wise: bool = False

    def predicate(self, alias: str = ROW) -> str:
        raise NotImplementedError("a batch-level rule names no rows")

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.ExpectTableRowCountToEqual(value=self.expected, description=description, meta=meta)


@dataclass(frozen=True, slots=True)
class SumEquals:
    """``SUM(column)`` equals ``expected`` exactly, compared by the database in NUMERIC.

    Not ExpectColumnSumToBeBetween: GX converts the observed sum to a float, and a million cents summed in binary
    floating point do not compare exactly. The unexpected-rows query returns one row (the totals) on a mismatch.
    """

    column: str
    expected: Decimal | int  # as the column stores it (``writeoffs.db.money.to_db``: ten-thousandths on SQLite)
    scope: Literal["batch"] = "batch"
    set_wise: bool = False

    def predicate(self, alias: str = ROW) -> str:
        raise NotImplementedError("a batch-level rule names no rows")

    def mismatch_query(self, batch: str) -> str:
        # Exact on both databases: NUMERIC on PostgreSQL, integer ten-thousandths on SQLite (writeoffs.db.money).
        return (
            f"SELECT t.row_count, t.total FROM (SELECT COUNT(*) AS row_count, "
            f"COALESCE(SUM({ROW}.{self.column}), 0) "
            f"AS total FROM (SELECT * FROM {batch}) AS {ROW}) AS t WHERE t.total <> {sql_literal(self.expected)}"
        )

    def expectation(self, *, description: str, meta: dict[str, Any]) -> Any:
        import great_expectations.expectations as gxe

        return gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=self.mismatch_query("{batch}"), description=description, meta=meta
        )


def expectations_of(rule: Rule, *, description: str, meta: dict[str, Any]) -> Sequence[Any]:
    if isinstance(rule, ColumnTypes):
        return rule.expectations(description=description, meta=meta)
    return [rule.expectation(description=description, meta=meta)]
