"""Collection activities have no natural key in the source: the k-th identical activity of a (customer, invoice,
type, date) is its key (``source_ref``). Two calls on the same day stay two calls, a re-load of the same export
inserts nothing, and a changed outcome updates the activity it belongs to - on both databases."""

from __future__ import annotations

from conftest import AS_OF
from ingest_support import HEADER, invoice_line, source_for
from sqlalchemy import text

from writeoffs.ingest import config as source_config
from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage

ACT_HEADER = '"Company","Customer No","Invoice No","Activity","Date","End Date","Outcome"'


def _load(ledger, tmp_path, activities: list[str]) -> dict:
    (tmp_path / "invoices.csv").write_text("\n".join([HEADER, invoice_line(1), invoice_line(2)]) + "\n")
    (tmp_path / "activities.csv").write_text("\n".join([ACT_HEADER, *activities]) + "\n")
    erp = source_config.load().source("erp_csv")
    datasets = {
        "invoices": {"file": "invoices.csv", "columns": dict(erp.datasets["invoices"].columns)},
        "activities": {"file": "activities.csv", "columns": dict(erp.datasets["activities"].columns)},
    }
    cfg = source_for(tmp_path, datasets=datasets)
    batch = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)["batch_id"]
    return merge(ledger, cfg, [batch], AS_OF)["batches"][0]["counts"]


def _activities(ledger) -> list[tuple]:
    with ledger.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT i.invoice_ref, a.activity_type, CAST(a.activity_date AS VARCHAR(10)), a.source_ref,"
                    " a.outcome FROM collection_activities a LEFT JOIN invoices i ON i.id = a.invoice_id"
                    " ORDER BY COALESCE(i.invoice_ref, ''), 2, 3, 4"
                )
            )
        ]


def test_identical_activities_keep_their_occurrence_across_loads(ledger, tmp_path) -> None:
    day1 = [
        '"US01","C-001","INV-0001","Call","10/01/2025","","no answer"',
        '"US01","C-001","INV-0001","Call","10/01/2025","","no answer"',  # a second call the same day
        '"US01","C-001","INV-0002","Call","10/01/2025","","no answer"',  # same day, other invoice
        '"US01","C-001","","Email","10/02/2025","","sent"',  # on the account
        '"US01","C-001","","Email","10/02/2025","","sent"',
    ]
    first = _load(ledger, tmp_path, day1)
    assert (first["activities_inserted"], first["activities_updated"]) == (5, 0)
    assert _activities(ledger) == [  # calls and e-mails are both contact attempts in the erp_csv mapping
        (None, "contact_attempt", "2025-10-02", "1", "sent"),
        (None, "contact_attempt", "2025-10-02", "2", "sent"),
        ("INV-0001", "contact_attempt", "2025-10-01", "1", "no answer"),
        ("INV-0001", "contact_attempt", "2025-10-01", "2", "no answer"),
        ("INV-0002", "contact_attempt", "2025-10-01", "1", "no answer"),
    ]
    again = _load(ledger, tmp_path, day1)
    assert (again["activities_inserted"], again["activities_updated"]) == (0, 0)
    # The second call got through after all: the export says so on its own row.
    day2 = [*day1[:1], day1[1].replace("no answer", "promise to pay"), *day1[2:]]
    third = _load(ledger, tmp_path, day2)
    assert (third["activities_inserted"], third["activities_updated"]) == (0, 1)
    assert _activities(ledger)[3] == ("INV-0001", "contact_attempt", "2025-10-01", "2", "promise to pay")
