"""Run the checks as Great Expectations 1.x suites against the ledger database and build the Data Docs.

GX does the counting in the database (SQL datasource, one query asset per validated target), so nothing is pulled
into Python but aggregates and a sample of offending values for the report. Each run gets its own ephemeral context
and its own Data Docs site directory, so reports of different runs never overwrite each other and a run needs no
GX project on disk. Imported inside tasks only (GX takes seconds to import).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from writeoffs.validation.checks import Check, Scope
from writeoffs.validation.config import Severity
from writeoffs.validation.rules import ColumnsPresent, ColumnTypes, Rule, expectations_of

log = logging.getLogger(__name__)

SITE = "writeoffs_validation"


@dataclass(frozen=True, slots=True)
class Planned:
    check: Check
    severity: Severity
    rule: Rule


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    check: str
    severity: Severity
    expectation: str  # GX expectation type, e.g. expect_column_values_to_be_between
    success: bool
    unexpected_count: int | None  # offending rows (row checks) / breaks (tie-out); None when not a count
    observed: str | None  # what was seen, for the report (e.g. the row count)
    error: str | None = None  # GX could not evaluate it (counts as failed: an unknown is not a pass)


@dataclass(frozen=True, slots=True)
class SuiteOutcome:
    scope: Scope
    expectations: tuple[ExpectationOutcome, ...]
    report_page: str | None  # the Data Docs page of this validation


def slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_")[:120] or "run"


def _datasource(context: Any, engine: Engine) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            search_path = conn.execute(text("SHOW search_path")).scalar_one()
        # GX opens its own connections: give them the ledger's search_path so unqualified names resolve the same.
        return context.data_sources.add_postgres(
            "ledger", connection_string=url, kwargs={"connect_args": {"options": f"-csearch_path={search_path}"}}
        )
    if engine.dialect.name == "sqlite":
        return context.data_sources.add_sqlite("ledger", connection_string=url)
    raise ValueError(f"validation supports PostgreSQL and SQLite ledgers, not {engine.dialect.name}")


def _error(info: Any) -> str | None:
    """GX reports evaluation errors either flat or keyed by metric id; either way the expectation was not run."""
    if not isinstance(info, dict) or not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info["raised_exception"] else None
    msgs = [str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("raised_exception")]
    return "; ".join(msgs) or None


def _is_structural(rule: Rule) -> bool:
    return isinstance(rule, (ColumnsPresent, ColumnTypes))


def run_suites(
    engine: Engine,
    targets: list[tuple[Scope, str, list[Planned], RowCounts | None]],
    *,
    run_name: str,
    docs_dir: Path,
) -> tuple[list[SuiteOutcome], Path]:
    """Validate each (scope, suite name, planned checks, SQL counts); returns outcomes and the Data Docs index path.

    Structural checks (columns, types) run on a table asset: GX reads column types from the table's reflected
    definition, which a query asset does not have. Data checks run on a query asset holding exactly the batch.
    A target with SQL counts (``writeoffs.validation.sqlpass``) has GX evaluate only its batch-level checks; its
    row-level expectations get results built from the counts, in the same suite result, so the Data Docs page and
    the outcomes look exactly as if GX had counted them.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs every metric at INFO and draws progress bars: noise that would bury our summary in the task log.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    docs_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.get_site_names()):
        context.delete_data_docs_site(site)  # the default site writes to a temp dir nobody reads
    context.add_data_docs_site(
        SITE,
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    datasource = _datasource(context, engine)
    definitions = []
    table_assets: dict[str, Any] = {}
    parts: list[tuple[str, list[str]]] = []  # (target suite, its GX suite names)
    deferred: dict[str, tuple[Any, list[Planned], RowCounts]] = {}  # suite -> (suite, SQL-counted checks, counts)
    for scope, suite_name, planned, counts in targets:
        data = [p for p in planned if not _is_structural(p.rule)]
        by_sql = [p for p in data if p.rule.scope == "row"] if counts is not None else []
        groups = [
            (f"{suite_name}__structure", [p for p in planned if _is_structural(p.rule)], "table"),
            (suite_name, [p for p in data if p not in by_sql], "query"),
        ]
        names = []
        for name, members, kind in groups:
            if not members and not (name == suite_name and by_sql):
                continue  # (a SQL-counted target keeps its GX data suite, even empty: it carries the batch)
            if kind == "table":
                if scope.table not in table_assets:
                    table_assets[scope.table] = datasource.add_table_asset(
                        f"table__{scope.table}", table_name=scope.table
                    ).add_batch_definition_whole_table("table")
                batch_definition = table_assets[scope.table]
            else:
                batch_definition = datasource.add_query_asset(
                    suite_name, query=scope.batch_query()
                ).add_batch_definition_whole_table("batch")
            suite = context.suites.add(gx.ExpectationSuite(name=name))
            for p in members:
                for expectation in _expectations(p):
                    suite.add_expectation(expectation)
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
                )
            )
            names.append(name)
            if name == suite_name and by_sql:
                assert counts is not None
                deferred[name] = (suite, by_sql, counts)
        parts.append((suite_name, names))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="validation",
            validation_definitions=definitions,
            # BASIC: counts plus a sample of offending values for the report (SUMMARY adds a GROUP BY of the
            # offending values per expectation: measurably slower at 1M rows). Offending rows themselves are
            # selected by the SQL predicates at quarantine time, never shipped through GX.
            result_format={"result_format": "BASIC", "partial_unexpected_count": 10},
        )
    )
    run_id = RunIdentifier(run_name=run_name)
    result = checkpoint.run(run_id=run_id)
    by_suite = {ident.expectation_suite_identifier.name: (ident, res) for ident, res in result.run_results.items()}
    for name, (suite, by_sql, counts) in deferred.items():
        ident, res = by_suite[name]
        _add_sql_results(context, ident, res, suite, by_sql, counts)
    # One build for the whole run (GX's UpdateDataDocsAction rebuilds the index once per suite result).
    context.build_data_docs(
        site_names=[SITE],
        resource_identifiers=[
            *by_suite[name][0:1] for name in by_suite  # noqa: placeholder
        ],
    )
def _outcome(r: Any) -> ExpectationOutcome:
    cfg = r.expectation_config
    meta = cfg.meta or {}
    error = _error(r.exception_info)
    res = r.result or {}
    unexpected = res.get("unexpected_count")
    observed = res.get("observed_value")
    if cfg.type == "unexpected_rows_expectation":
        unexpected = observed  # the number of offending rows (or of tie-out breaks)
    return ExpectationOutcome(
        check=str(meta.get("check")),
        severity=meta.get("severity", "blocking"),
        expectation=cfg.type,
        success=bool(r.success) and error is None,
        unexpected_count=None if unexpected is None else int(unexpected),
        observed=None if observed is None else str(observed),
        error=error,
    )
