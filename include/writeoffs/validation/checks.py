"""The registry: every validation check, once, as data (name, dataset, default severity, rule builder).

A check's rule is built per batch from a :class:`Scope` (which rows, the business date, the currencies, the control
totals) because several checks depend on them (``date <= as_of``, ``rows == control``). A builder returning None
means "not applicable to this batch" (a source that reports no control totals), and the check is not evaluated.

Check names are ``<dataset>.<rule>``; the rule part is what the quarantine table records as ``reason`` (it holds
32 characters, asserted by the unit tests), the dataset goes to its own column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from writeoffs.buckets import DEFAULT_BUCKETS, Bucket, bucket_case_text
from writeoffs.db.dialect import POSTGRESQL, Dialect
from writeoffs.db.money import to_db
from writeoffs.validation.config import Severity
from writeoffs.validation.rules import (
    AtLeast,
    Between,
    ColumnsPresent,
    ColumnTypes,
    InSet,
    RowCountEquals,
    Rule,
    SumEquals,
    Unexpected,
    UniqueKey,
    sql_literal,
)

STAGED = ("invoices", "payments", "activities")
DATASETS = (*STAGED, "aging")

DATE_TYPES = ("DATE",)
MONEY_TYPES = ("NUMERIC", "DECIMAL")
TEXT_TYPES = ("VARCHAR", "TEXT", "CHAR")
BOOL_TYPES = ("BOOLEAN",)
INT_TYPES = ("INTEGER", "BIGINT", "SMALLINT")

#: Canonical columns each staged dataset must have, with the database types accepted for them (SQLAlchemy type
#: names: GX resolves them in the dialect and compares with isinstance, so VARCHAR(16) is a VARCHAR).
COLUMNS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "invoices": (
        ("entity", TEXT_TYPES),
        ("invoice_ref", TEXT_TYPES),
        ("customer_ref", TEXT_TYPES),
        ("invoice_date", DATE_TYPES),
        ("due_date", DATE_TYPES),
        ("currency", TEXT_TYPES),
        ("amount", MONEY_TYPES),
        ("open_balance", MONEY_TYPES),
        ("fx_rate", MONEY_TYPES),
        ("disputed", BOOL_TYPES),
        ("dispute_since", DATE_TYPES),
        ("payment_plan", BOOL_TYPES),
        ("bankrupt", BOOL_TYPES),
        ("transferred_to_parent", BOOL_TYPES),
    ),
    "payments": (
        ("entity", TEXT_TYPES),
        ("payment_ref", TEXT_TYPES),
        ("customer_ref", TEXT_TYPES),
        ("payment_date", DATE_TYPES),
        ("currency", TEXT_TYPES),
        ("amount", MONEY_TYPES),
        ("invoice_ref", TEXT_TYPES),
        ("applied_amount", MONEY_TYPES),
    ),
    "activities": (
        ("entity", TEXT_TYPES),
        ("customer_ref", TEXT_TYPES),
        ("invoice_ref", TEXT_TYPES),
        ("activity_type", TEXT_TYPES),
        ("activity_date", DATE_TYPES),
        ("end_date", DATE_TYPES),
    ),
    "aging": (
        ("entity_code", TEXT_TYPES),
        ("currency", TEXT_TYPES),
        ("days_past_due", INT_TYPES),
        ("bucket", TEXT_TYPES),
        ("open_balance", MONEY_TYPES),
    ),
}

#: Column whose total the control file reports, per dataset (payments are staged one row per allocation).
CONTROL_AMOUNT_COLUMN = {"invoices": "amount", "payments": "applied_amount"}


@dataclass(frozen=True, slots=True)
class Tables:
    """Where the data lives. Defaults are the ingest's staging tables (migration 0003) and the ledger's tables;
    tests point one at a deliberately malformed copy to prove the structural checks fail."""

    invoices: str = "stg_invoices"
    payments: str = "stg_payments"
    activities: str = "stg_activities"
    aging: str = "aging_snapshots"
    customers: str = "customers"
    currencies: str = "currencies"
    journal_lines: str = "journal_lines"
    journal_entries: str = "journal_entries"
    accounts: str = "accounts"

    def of(self, dataset: str) -> str:
        return str(getattr(self, dataset))


@dataclass(frozen=True, slots=True)
class Scope:
    """One validation target: a staged dataset of one ingest batch, or the aging snapshot of one date."""

    dataset: str
    as_of: date
    tables: Tables = Tables()
    batch_id: int | None = None  # staged datasets
    currencies: tuple[str, ...] = ()
    control_rows: int | None = None  # what the source says it sent, less rows the ingest already quarantined
    control_amount: Decimal | None = None
    buckets: tuple[Bucket, ...] = DEFAULT_BUCKETS
    tolerance: Decimal = Decimal("0.01")
    dialect: Dialect = POSTGRESQL
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.tables.of(self.dataset)

    def filter_sql(self, alias: str | None = None) -> str:
        """The rows of this target, as a condition (``alias.`` prefix when given)."""
        p = f"{alias}." if alias else ""
        if self.dataset == "aging":
            return f"{p}as_of_date = {sql_literal(self.as_of)}"
        if self.batch_id is None:
            raise ValueError(f"a staged dataset ({self.dataset}) is validated per ingest batch: batch_id missing")
        return f"{p}batch_id = {int(self.batch_id)}"

    def batch_query(self) -> str:
        """The GX query asset: exactly the rows validated, nothing else."""
        return f"SELECT * FROM {self.table} WHERE {self.filter_sql()}"


Builder = Callable[[Scope], Rule | None]


@dataclass(frozen=True, slots=True)
class Check:
    dataset: str
    rule_name: str  # also the quarantine reason: at most 32 characters
    default: Severity
    description: str
    build: Builder
    column: str | None = None  # the field a row-level finding is about (quarantine's ``field``)

    @property
    def name(self) -> str:
        return f"{self.dataset}.{self.rule_name}"


def _not_after_as_of(column: str) -> Builder:
    return lambda s: Between(column, max_value=s.as_of)


def _nonneg(column: str) -> Builder:
    return lambda s: Between(column, min_value=Decimal(0))


def _customer_known(s: Scope) -> Rule:
    # Known = already in the ledger, or arriving with this very batch on one of its invoices (new customers are
    # created by the merge from invoice rows). NOT EXISTS: anti-joins, set-wise whatever the batch size.
    t = s.tables
    return Unexpected(
        "{a}.entity IS NOT NULL AND {a}.customer_ref IS NOT NULL"
        f" AND NOT EXISTS (SELECT 1 FROM {t.customers} c"
        " WHERE c.entity_code = {a}.entity AND c.customer_ref = {a}.customer_ref)"
        f" AND NOT EXISTS (SELECT 1 FROM {t.invoices} i"
        " WHERE i.batch_id = {a}.batch_id AND i.entity = {a}.entity AND i.customer_ref = {a}.customer_ref)"
    )


def _unique(*columns: str) -> Builder:
    return lambda s: UniqueKey(columns, s.table, s.filter_sql("{a}"), ("source_file", "source_row"))


def _control_rows(s: Scope) -> Rule | None:
    return None if s.control_rows is None else RowCountEquals(s.control_rows)


def _control_amount(s: Scope) -> Rule | None:
    column = CONTROL_AMOUNT_COLUMN.get(s.dataset)
    if s.control_amount is None or column is None:
        return None
    # Compared in the database with the column as stored (writeoffs.db.money: ten-thousandths on SQLite).
    return SumEquals(column, to_db(s.dialect, s.control_amount))


def _bucket_consistent(s: Scope) -> Rule:
    return Unexpected("{a}.bucket <> " + bucket_case_text("{a}.days_past_due", s.buckets), set_wise=False)


@dataclass(frozen=True, slots=True)
class TieOut:
    """Aging total per (entity, currency) vs posted balance of the entity's ``ar_control`` account, same date.

    A batch rule whose unexpected rows are the breaks. Written without the JOIN keyword (comma joins) because GX
    treats a query containing JOIN as one that aliases ``{batch}`` itself.
    """

    as_of: date
    tolerance: Decimal | int  # as stored, ``writeoffs.db.money.to_db``
    tables: Tables
    scope: str = "batch"

    def predicate(self, alias: str = "s") -> str:
        raise NotImplementedError("a batch-level rule names no rows")

    def breaks_query(self, batch: str) -> str:
        t = self.tables
        return (
            "SELECT x.entity_code, x.currency, SUM(x.aging_total) AS aging_total, SUM(x.gl_balance) AS gl_balance"
            " FROM ("
            f" SELECT s.entity_code, s.currency, s.open_balance AS aging_total, 0 AS gl_balance FROM {batch}"
            " UNION ALL"
            " SELECT l.entity_code, l.currency, 0 AS aging_total, l.debit - l.credit AS gl_balance"
            f" FROM {t.journal_lines} l, {t.journal_entries} e, {t.accounts} a"
            " WHERE e.id = l.entry_id AND e.status = 'posted'"
            f" AND e.posting_date <= {sql_literal(self.as_of)}"
            " AND a.entity_code = l.entity_code AND a.code = l.account_code AND a.role = 'ar_control'"
            ") x GROUP BY x.entity_code, x.currency"
            f" HAVING ABS(SUM(x.aging_total) - SUM(x.gl_balance)) > {sql_literal(self.tolerance)}"
        )

    def expectation(self, *, description: str, meta: dict[str, object]) -> object:
        import great_expectations.expectations as gxe

        return gxe.UnexpectedRowsExpectation(
            unexpected_rows_query=self.breaks_query("(SELECT * FROM {batch}) AS s"), description=description, meta=meta
        )


def _tie_out(s: Scope) -> Rule:
    return TieOut(s.as_of, to_db(s.dialect, s.tolerance), s.tables)  # type: ignore[return-value]


def expected_types(dataset: str, column: str, dialect: Dialect) -> tuple[str, ...]:
    """Accepted type names of a staged column: the staging DDL's type as the database spells it (PostgreSQL: GX
    compares the reflected type text, e.g. ``NUMERIC(20, 4)``), and the bare type name (SQLite: GX resolves it to
    a SQLAlchemy type class and compares with isinstance). The DDL is the ingest's table definition: the contract,
    not a copy of it."""
    from writeoffs.ingest.tables import STAGING

    col_type = STAGING[dataset].c[column].type
    spelled = str(col_type.compile(dialect=dialect.sqlalchemy_dialect()))
    return (spelled, spelled.split("(", 1)[0])


def _types(dataset: str, cols: tuple[tuple[str, tuple[str, ...]], ...]) -> Builder:
    def build(s: Scope) -> Rule:
        # SQLite has declared types only (a DATE column holds ISO text) and GX cannot match its DATE reflection
        # with any type name; dates are still checked row by row (ranges) there. PostgreSQL checks every column.
        keep = [c for c, accepted in cols if not (not s.dialect.native_dates and accepted == DATE_TYPES)]
        return ColumnTypes(tuple((c, expected_types(dataset, c, s.dialect)) for c in keep))

    return build


def _structure(dataset: str) -> list[Check]:
    cols = COLUMNS[dataset]
    return [
        Check(
            dataset,
            "required_columns",
            "blocking",
            f"{dataset} has every canonical column",
            lambda s, cols=cols: ColumnsPresent(tuple(c for c, _ in cols)),
        ),
        Check(
            dataset,
            "column_types",
            "blocking",
            f"{dataset} columns have the canonical types",
            _types(dataset, cols),
        ),
    ]


def _control(dataset: str) -> list[Check]:
    out = [
        Check(
            dataset,
            "control_row_count",
            "blocking",
            f"staged {dataset} rows (+ rows quarantined at ingest) equal the source's control count",
            _control_rows,
        )
    ]
    if dataset in CONTROL_AMOUNT_COLUMN:
        out.append(
            Check(
                dataset,
                "control_amount_total",
                "blocking",
                f"sum of staged {dataset}.{CONTROL_AMOUNT_COLUMN[dataset]} equals the source's control total",
                _control_amount,
            )
        )
    return out


def _currency(dataset: str) -> Check:
    return Check(
        dataset,
        "currency_iso4217",
        "warning",
        "currency is an ISO 4217 code known to the ledger",
        lambda s: InSet("currency", s.currencies),
        "currency",
    )


def _dates(dataset: str, *columns: str) -> list[Check]:
    return [
        Check(dataset, f"not_after_as_of.{c}", "warning", f"{c} is not after the as-of date", _not_after_as_of(c), c)
        for c in columns
    ]


CHECKS: tuple[Check, ...] = (
    # invoices
    *_structure("invoices"),
    Check(
        "invoices",
        "unique_invoice",
        "warning",
        "one row per (source batch, entity, invoice_ref); every copy of a duplicate is quarantined",
        _unique("entity", "invoice_ref"),
        "invoice_ref",
    ),
    Check("invoices", "amount_nonnegative", "warning", "amount >= 0", _nonneg("amount"), "amount"),
    Check(
        "invoices", "open_balance_nonnegative", "warning", "open_balance >= 0", _nonneg("open_balance"), "open_balance"
    ),
    Check(
        "invoices",
        "open_balance_within_amount",
        "warning",
        "open_balance <= amount",
        lambda s: AtLeast("amount", "open_balance"),
        "open_balance",
    ),
    _currency("invoices"),
    Check(
        "invoices",
        "due_not_before_invoice_date",
        "warning",
        "due_date >= invoice_date",
        lambda s: AtLeast("due_date", "invoice_date"),
        "due_date",
    ),
    # due_date is legitimately in the future (invoices not yet due): only booking/event dates are bounded.
    *_dates("invoices", "invoice_date", "dispute_since"),
    *_control("invoices"),
    # payments
    *_structure("payments"),
    Check(
        "payments",
        "unique_payment",
        "warning",
        "one row per (source batch, entity, payment_ref, invoice_ref)",
        _unique("entity", "payment_ref", "invoice_ref"),
        "payment_ref",
    ),
    Check("payments", "amount_nonnegative", "warning", "amount >= 0", _nonneg("amount"), "amount"),
    Check(
        "payments",
        "applied_nonnegative",
        "warning",
        "applied_amount >= 0",
        _nonneg("applied_amount"),
        "applied_amount",
    ),
    Check(
        "payments",
        "applied_within_amount",
        "warning",
        "applied_amount <= amount (a payment cannot apply more than was paid)",
        lambda s: AtLeast("amount", "applied_amount"),
        "applied_amount",
    ),
    _currency("payments"),
    *_dates("payments", "payment_date"),
    Check(
        "payments",
        "customer_known",
        "warning",
        "the paying customer is in the ledger or on an invoice of the same batch",
        _customer_known,
        "customer_ref",
    ),
    *_control("payments"),
    # activities
    *_structure("activities"),
    Check(
        "activities",
        "end_not_before_start",
        "warning",
        "end_date >= activity_date",
        lambda s: AtLeast("end_date", "activity_date"),
        "end_date",
    ),
    *_dates("activities", "activity_date", "end_date"),
    Check(
        "activities",
        "customer_known",
        "warning",
        "the customer worked is in the ledger or on an invoice of the same batch",
        _customer_known,
        "customer_ref",
    ),
    *_control("activities"),
    # aging snapshot (computed by us from the merged sub-ledger)
    *_structure("aging")[:1],
    Check(
        "aging",
        "bucket_matches_days_past_due",
        "blocking",
        "bucket is the configured bucket of days_past_due",
        _bucket_consistent,
        "bucket",
    ),
    Check(
        "aging",
        "tie_out_gl",
        "blocking",
        "aging open balance per entity and currency equals the GL AR control balance (within tolerance)",
        _tie_out,
    ),
)


def all_check_names() -> list[str]:
    return [c.name for c in CHECKS]


def checks_for(dataset: str) -> list[Check]:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    return [c for c in CHECKS if c.dataset == dataset]


def by_name(name: str) -> Check:
    for c in CHECKS:
        if c.name == name:
            return c
    raise KeyError(name)
