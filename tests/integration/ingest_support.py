"""Helpers for ingest tests: a throw-away CSV source built from the committed ``erp_csv`` mapping, and a
fingerprint of the ledger (row count and sums of every numeric column of every accounting table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Numeric, func, select

from writeoffs.db.schema import metadata
from writeoffs.ingest import config as source_config

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
HEADER = (
    '"Company","Invoice No","Customer No","Customer Name","Parent Customer No","Segment","Invoice Date",'
    '"Due Date","Currency","Amount","Open Balance","FX Rate","Disputed","Dispute Since","Payment Plan",'
    '"Bankrupt","Transferred To Parent","Description"'
)


def invoice_line(n: int, *, amount: str = "1,000.00", description: str = "consulting", **over: str) -> str:
    v = {
        "Invoice Date": "09/15/2025",
        "Due Date": "10/15/2025",
        "Open Balance": amount,
        **over,
    }
    return (
        f'"US01","INV-{n:04d}","C-001","Northwind","","it_services","{v["Invoice Date"]}","{v["Due Date"]}","USD",'
        f'"{amount}","{v["Open Balance"]}","","No","","No","No","No","{description}"'
    )


def source_for(directory: Path, *, file: str = "invoices.csv", mode: str = "quarantine", **over: Any):
    """A config with one source ``t`` reading ``file`` from ``directory`` with the erp_csv mapping."""
    return source_config.parse(config_dict(directory, file=file, mode=mode, **over))


def write_config(path: Path, directory: Path, **over: Any) -> Path:
    """The same config as a YAML file (what the CLI reads)."""
    import json

    import yaml

    path.write_text(yaml.safe_dump(json.loads(json.dumps(config_dict(directory, **over), default=str))))
    return path


def config_dict(directory: Path, *, file: str = "invoices.csv", mode: str = "quarantine", **over: Any) -> dict:
    erp = source_config.load().source("erp_csv")
    body = erp.model_dump(exclude={"name", "datasets", "location", "control_file"})
    body.update(
        location=str(directory),
        on_bad_rows=mode,
        datasets={"invoices": {"file": file, "columns": dict(erp.datasets["invoices"].columns)}},
        control_file=None,
    )
    body.update(over)
    return {
        "version": "test",
        "entities": {
            "US01": {"name": "US", "functional_currency": "USD", "method": "direct"},
            "EU01": {"name": "EU", "functional_currency": "EUR", "method": "allowance"},
        },
        "sources": {"t": body},
    }


#: Bookkeeping of the ingestion itself (batches, staging, quarantine) and the audit trail are not the ledger: a
#: rejection is recorded there on purpose.
NOT_LEDGER_PREFIXES = ("ingest_", "stg_", "audit_log", "validation_runs", "alembic")


def ledger_fingerprint(engine: Engine) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    with engine.connect() as conn:
        for t in metadata.sorted_tables:
            if t.name.startswith(NOT_LEDGER_PREFIXES):
                continue
            nums = [c for c in t.columns if isinstance(getattr(c.type, "impl", c.type), Numeric)]
            row = conn.execute(
                select(func.count(), *(func.coalesce(func.sum(c), 0) for c in nums)).select_from(t)
            ).one()
            out[t.name] = tuple(str(v) for v in row)
    return out
