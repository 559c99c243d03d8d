"""The full candidate list as CSV (:func:`write_candidates_csv`)."""

from __future__ import annotations

import json
import re

from writeoffs.approval_view.model import BatchView
from writeoffs.report_store import StorePath
from writeoffs.safe_text import csv_writer

CSV_COLUMNS = (
    "batch_id",
    "invoice_ref",
    "customer_ref",
    "customer_name",
    "currency",
    "amount",
    "days_past_due",
    "bucket",
    "reason_code",
    "rule",
    "status",
    "evidence",
)


def candidates_csv_path(reports_dir: StorePath, view: BatchView) -> StorePath:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", view.batch_key)
    return reports_dir / "batches" / f"batch_{view.batch_id}_{safe}.csv"


def write_candidates_csv(reports_dir: StorePath, view: BatchView) -> StorePath:
    """Every item of the batch (including already-excluded ones, with their status); written atomically."""
    path = candidates_csv_path(reports_dir, view)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv_writer(fh)  # formula-looking text neutralised (writeoffs.safe_text)
        w.writerow(CSV_COLUMNS)
        for i in view.items:
            w.writerow(
                [
                    view.batch_id,
                    i.invoice_ref,
                    i.customer_ref,
                    i.customer_name,
                    view.currency,
                    format(i.amount, "f"),
                    i.days_past_due,
                    i.bucket,
                    i.reason_code,
                    i.rule,
                    i.status,
                    json.dumps(i.evidence, sort_keys=True, default=str),
                ]
            )
    tmp.replace(path)
    return path
