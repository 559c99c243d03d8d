"""Planning: the scopes of a batch (with its control totals), the checks that apply to each, the targets of a
run, and GX outcomes grouped into findings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from writeoffs.db import dialect
from writeoffs.errors import ConfigError, WriteoffError
from writeoffs.validation.checks import STAGED, Check, Scope, Tables, checks_for
from writeoffs.validation.config import ValidationConfig
from writeoffs.validation.run.report import Finding
from writeoffs.validation.sqlpass import RowCounts


def _dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"control total {what} is {value!r}, not a whole number")
    d = Decimal(str(value))
    if d != d.to_integral_value():
        raise ConfigError(f"control total {what} is {value!r}, not a whole number")
    return int(d)


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, (bool, float)) or not isinstance(value, (int, str, Decimal)):
        raise ConfigError(f"control total {what} is {value!r}, not an exact amount")
    return Decimal(str(value))


def _currencies(conn: Connection, tables: Tables) -> tuple[str, ...]:
    return tuple(conn.execute(text(f"SELECT code FROM {tables.currencies} ORDER BY code")).scalars())


def _batch_scopes(
    conn: Connection, batch_id: int, as_of: date, cfg: ValidationConfig, tables: Tables
) -> tuple[str, list[tuple[Scope, dict[str, str]]]]:
    row = conn.execute(
        text("SELECT source, as_of_date, control, details FROM ingest_batches WHERE id = :b"), {"b": batch_id}
    ).first()
    if row is None:
        raise WriteoffError(f"ingest batch {batch_id} does not exist")
    control = json.loads(row.control, parse_float=Decimal) if row.control else None
    details = json.loads(row.details) if row.details else {}
    filtered = {ds: int(d.get("filtered", 0)) for ds, d in details.items() if isinstance(d, dict)}
    ingest_q = dict(
        conn.execute(
            text("SELECT dataset, COUNT(*) FROM ingest_quarantine WHERE batch_id = :b GROUP BY dataset"),
            {"b": batch_id},
        ).all()
    )
    currencies = _currencies(conn, tables)
    out = []
    for dataset in STAGED:
        notes: dict[str, str] = {}
        keys = cfg.control_keys.get(dataset)
        rows = amount = None
        if control is None:
            notes["control"] = "the source ships no control file"
        elif keys is not None:
            if keys.rows and (v := _dig(control, keys.rows)) is not None:
                # The control file counts every exported row; rows the ingest refused to stage or the mapping's
                # keep_if filtered are accounted for.
                rows = _int(v, f"{keys.rows}") - int(ingest_q.get(dataset, 0)) - filtered.get(dataset, 0)
            if keys.amount and (v := _dig(control, keys.amount)) is not None:
                if filtered.get(dataset):
                    # Filtered rows are not kept, nor their amounts: the exported total cannot be compared.
                    notes["control_amount_total"] = (
                        f"{filtered[dataset]} {dataset} row(s) were filtered by the mapping: total not comparable"
                    )
                elif ingest_q.get(dataset):
                    # Rows quarantined while parsing have no trustworthy amount: the total cannot be compared.
                    notes["control_amount_total"] = (
                        f"{ingest_q[dataset]} {dataset} row(s) were quarantined at ingest: total not comparable"
                    )
                else:
                    amount = _amount(v, keys.amount)
        out.append(
            (
                Scope(
                    dataset=dataset,
                    as_of=as_of,
                    tables=tables,
                    batch_id=batch_id,
                    currencies=currencies,
                    control_rows=rows,
                    control_amount=amount,
                    tolerance=cfg.tie_out.tolerance,
                    dialect=dialect.of(conn),
                ),
                notes,
            )
        )
    return str(row.source), out


def _plan(scope: Scope, cfg: ValidationConfig, notes: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    from writeoffs.validation.gx import Planned

    planned, skipped = [], {}
    for check in checks_for(scope.dataset):
        rule = check.build(scope)
        if rule is None:
            skipped[check.name] = notes.get(check.rule_name) or notes.get("control") or "not reported by the source"
            continue
        planned.append(Planned(check, cfg.severity_of(check.name, check.default), rule))
    return planned, skipped


def _findings(outcomes: Sequence[Any]) -> list[Finding]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for o in outcomes:
        grouped[o.check].append(o)
    out = []
    for name, exps in grouped.items():
        failed = [e for e in exps if not e.success]
        counts = [e.unexpected_count for e in exps if e.unexpected_count is not None]
        out.append(
            Finding(
                check=name,
                severity=exps[0].severity,
                success=not failed,
                evaluated=len(exps),
                failed=len(failed),
                unexpected_count=sum(counts) if counts else None,
                observed="; ".join(e.observed for e in exps if e.observed is not None) or None,
                error="; ".join(e.error for e in failed if e.error) or None,
            )
        )
    return out


@dataclass(slots=True)
class _Target:
    no: int  # the target's number in the run (the temporary table's ``target``)
    scope: Scope
    source: str
    suite: str
    planned: list[Any]
    skipped: dict[str, str]
    counts: RowCounts | None = None
    read: int = 0  # records the source delivered for this dataset (staged + quarantined, as staging counted)
    quarantined_before: int = 0  # of those, rows already in ingest_quarantine (parse errors, earlier runs)

    @property
    def row_checks(self) -> list[tuple[Check, Any]]:
        return [(p.check, p.rule) for p in self.planned if p.rule.scope == "row"]
