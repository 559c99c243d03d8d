"""Run the checks as Great Expectations 1.x suites against the ledger database and build the Data Docs.

GX does the counting in the database (SQL datasource, one query asset per validated target), so nothing is pulled
into Python but aggregates and a sample of offending values for the report. Each run gets its own ephemeral context
and its own Data Docs site directory, so reports of different runs never overwrite each other and a run needs no
GX project on disk. Imported inside tasks only (GX takes seconds to import).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from writeoffs.db import dialect
from writeoffs.validation.checks import Check, Scope
from writeoffs.validation.config import Severity
from writeoffs.validation.rules import ColumnsPresent, ColumnTypes, Rule, expectations_of
from writeoffs.validation.sqlpass import RowCounts

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


def prewarm() -> threading.Thread:
    """Import GX in a background thread while the caller runs its SQL; ``run_suites`` then finds it imported.

    The import costs 2–3 s of Python; the SQL pass as long of database time, on the other core. psycopg releases
    the GIL while a statement runs, so the two overlap instead of adding up. If the import fails here, nothing is
    lost: ``run_suites`` imports again, in the caller's thread, and raises the error where it belongs.
    """

    def load() -> None:
        try:
            import great_expectations.expectations  # noqa: F401
        except ImportError:
            log.debug("GX pre-import failed; run_suites imports it again", exc_info=True)

    thread = threading.Thread(target=load, name="gx-import", daemon=True)
    thread.start()
    return thread


def slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_")[:120] or "run"


def _datasource(context: Any, engine: Engine) -> Any:
    from writeoffs.db.engine import search_path_option

    url = engine.url.render_as_string(hide_password=False)
    db = dialect.of(engine)  # refuses a database that is neither
    if db is dialect.POSTGRESQL:
        with engine.connect() as conn:
            search_path = conn.execute(text("SHOW search_path")).scalar_one()
        # GX opens its own connections: give them the ledger's search_path so unqualified names resolve the same.
        return context.data_sources.add_postgres(
            "ledger", connection_string=url, kwargs={"connect_args": {"options": search_path_option(search_path)}}
        )
    return context.data_sources.add_sqlite("ledger", connection_string=url)


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

    context = _context(docs_dir)
    definitions, parts, deferred = _define_suites(context, _datasource(context, engine), targets)
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
    for name, (suite, by_sql, counts, order) in deferred.items():
        ident, res = by_suite[name]
        _add_sql_results(context, ident, res, suite, by_sql, counts, order)
    _build_docs(context, by_suite, docs_dir)
    return _suite_outcomes(context, targets, parts, by_suite), docs_dir / "index.html"


def _context(docs_dir: Path) -> Any:
    """An ephemeral GX context, quiet, whose only Data Docs site writes to ``docs_dir``."""
    import great_expectations as gx
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
    return context


def _define_suites(
    context: Any, datasource: Any, targets: list[tuple[Scope, str, list[Planned], RowCounts | None]]
) -> tuple[list[Any], list[tuple[str, list[str]]], dict[str, tuple[Any, list[Planned], RowCounts, dict[str, int]]]]:
    """The GX suites and validation definitions of every target: a structure suite on the table asset, a data suite
    on the batch's query asset; returns the definitions, each target's GX suite names, and the SQL-counted suites
    whose row-level results are added after the run."""
    import great_expectations as gx

    definitions = []
    table_assets: dict[str, Any] = {}
    parts: list[tuple[str, list[str]]] = []  # (target suite, its GX suite names)
    # suite name -> (GX suite, SQL-counted checks, their counts, the registry's order of the target's checks)
    deferred: dict[str, tuple[Any, list[Planned], RowCounts, dict[str, int]]] = {}
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
                deferred[name] = (suite, by_sql, counts, {p.check.name: i for i, p in enumerate(planned)})
        parts.append((suite_name, names))
    return definitions, parts, deferred


def _build_docs(context: Any, by_suite: dict[str, tuple[Any, Any]], docs_dir: Path) -> None:
    # One build for the whole run (GX's UpdateDataDocsAction rebuilds the index once per suite result). Without GX's
    # index: its clean-up deletes every page of the site whose result this (ephemeral) context does not hold, i.e.
    # the pages of earlier builds into the same site; ours lists every page on disk and works offline.
    from writeoffs.validation.docs import finish_site

    idents = [ident for ident, _ in by_suite.values()]
    context.build_data_docs(
        site_names=[SITE],
        resource_identifiers=[*idents, *(i.expectation_suite_identifier for i in idents)],
        build_index=False,
    )
    finish_site(docs_dir)


def _suite_outcomes(
    context: Any,
    targets: list[tuple[Scope, str, list[Planned], RowCounts | None]],
    parts: list[tuple[str, list[str]]],
    by_suite: dict[str, tuple[Any, Any]],
) -> list[SuiteOutcome]:
    """Per target: the outcomes of all its GX suites and the Data Docs page of its data suite."""
    outcomes: list[SuiteOutcome] = []
    for (scope, _, _, _), (suite_name, names) in zip(targets, parts, strict=True):
        exps: list[ExpectationOutcome] = []
        page = None
        for name in names:
            ident, res = by_suite[name]
            exps.extend(_outcome(r) for r in res.results)
            if name == suite_name or page is None:
                urls = context.get_docs_sites_urls(resource_identifier=ident, site_names=[SITE], only_if_exists=True)
                if urls and urls[0].get("site_url"):
                    page = str(urls[0]["site_url"])
        outcomes.append(SuiteOutcome(scope, tuple(exps), page))
    return outcomes


def _expectations(p: Planned) -> Sequence[Any]:
    meta = {"check": p.check.name, "severity": p.severity}
    description = f"[{p.severity}] {p.check.name}: {p.check.description}"
    return expectations_of(p.rule, description=description, meta=meta)


def _add_sql_results(
    context: Any, ident: Any, res: Any, suite: Any, by_sql: list[Planned], counts: RowCounts, order: dict[str, int]
) -> None:
    """Append the SQL-counted row-level results to a GX suite result, in GX's own result shapes, and store it.

    The expectations are added to the suite only now (after GX ran it), so the suite page lists every check while
    GX evaluated none of them twice. Success is GX's rule for these expectations (no ``mostly``): no offending row.
    """
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    for p in by_sql:
        name = p.check.name
        bad = counts.offending[name]
        for expectation in _expectations(p):
            expectation = suite.add_expectation(expectation)
            if expectation.expectation_type == "unexpected_rows_expectation":
                result: dict[str, Any] = {"observed_value": bad}
            else:
                result = _map_result(counts.rows, counts.considered.get(name), bad, counts.samples.get(name))
            res.results.append(
                ExpectationValidationResult(
                    success=bad == 0,
                    expectation_config=expectation.configuration,
                    result=result,
                    exception_info={"raised_exception": False, "exception_message": None, "exception_traceback": None},
                )
            )
    # The registry's order, as in a suite GX evaluated whole (the page and validation_runs read the same either way).
    res.results.sort(key=lambda r: order.get((r.expectation_config.meta or {}).get("check"), len(order)))
    n_ok = sum(1 for r in res.results if r.success)
    res.success = n_ok == len(res.results)
    res.statistics = {
        "evaluated_expectations": len(res.results),
        "successful_expectations": n_ok,
        "unsuccessful_expectations": len(res.results) - n_ok,
        "success_percent": 100.0 * n_ok / len(res.results) if res.results else None,
    }
    res.meta["row_checks_counted_by"] = "sql"
    context.validation_results_store.store_validation_results(
        suite_validation_result=res,
        suite_validation_result_identifier=ident,
        expectation_suite_identifier=ident.expectation_suite_identifier,
    )


def _map_result(rows: int, considered: int | None, bad: int, sample: list[Any] | None) -> dict[str, Any]:
    """GX's BASIC result of a map expectation (``_format_map_output``); percentages are report-only floats."""
    out: dict[str, Any] = {
        "element_count": rows,
        "unexpected_count": bad,
        "unexpected_percent": None,
        "partial_unexpected_list": list(sample or []),
    }
    total = bad / rows * 100 if rows else None
    if considered is None:
        out["unexpected_percent"] = total
        return out
    out["unexpected_percent"] = bad / considered * 100 if considered else None
    out.update(
        missing_count=rows - considered,
        missing_percent=(rows - considered) / rows * 100 if rows else None,
        unexpected_percent_total=total,
        unexpected_percent_nonmissing=out["unexpected_percent"],
    )
    return out


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
