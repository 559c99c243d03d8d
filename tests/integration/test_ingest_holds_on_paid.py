"""Dispute holds on paid invoices are closed at ingest, set-wise, and counted in the audited merge summary (issue
15: 412 dispute holds stayed open on invoices that were paid). A paid invoice gets no new hold, so a daily load of
an export that still flags it disputed does not open and close a hold every day.
"""

from __future__ import annotations

import json
from datetime import date

from conftest import AS_OF
from ingest_support import HEADER, invoice_line, source_for
from sqlalchemy import text

from writeoffs.ingest.merge import merge
from writeoffs.ingest.sources import build_source
from writeoffs.ingest.staging import stage


def _disputed(line: str) -> str:
    return line.replace('"No","","No"', '"Yes","11/01/2026","No"', 1)  # Disputed, Dispute Since, Payment Plan


def _load(ledger, tmp_path, lines: list[str]) -> dict:
    (tmp_path / "invoices.csv").write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    cfg = source_for(tmp_path)
    batch = stage(ledger, cfg, build_source(cfg.source("t")), AS_OF)["batch_id"]
    return merge(ledger, cfg, [batch], AS_OF)["batches"][0]["counts"]


def _holds(ledger) -> list[tuple[str, str, str | None, date | None]]:
    with ledger.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.invoice_ref, h.note, h.hold_type, h.end_date"
                " FROM holds h JOIN invoices i ON i.id = h.invoice_id ORDER BY 1, 2"
            )
        ).all()
    return [
        (r[0], r[1], r[2], r[3] if r[3] is None or isinstance(r[3], date) else date.fromisoformat(r[3])) for r in rows
    ]


def test_dispute_holds_on_paid_invoices_are_closed_and_counted(ledger, tmp_path) -> None:
    paid = {"Open Balance": "0.00"}
    first = _load(ledger, tmp_path, [_disputed(invoice_line(1)), _disputed(invoice_line(2, **paid)), invoice_line(3)])
    assert (first["dispute_holds_opened"], first["dispute_holds_closed_on_paid"]) == (1, 0)  # none on paid INV-0002
    with ledger.begin() as conn:  # a collector's own dispute hold on the open INV-0003
        conn.execute(
            text(
                "INSERT INTO holds (customer_id, invoice_id, hold_type, start_date, note)"
                " SELECT customer_id, id, 'dispute', '2026-11-02', 'collector'"
                " FROM invoices WHERE invoice_ref = 'INV-0003'"
            )
        )

    # Both invoices are paid now; the export still flags INV-0001 disputed.
    day2 = [_disputed(invoice_line(1, **paid)), _disputed(invoice_line(2, **paid)), invoice_line(3, **paid)]
    second = _load(ledger, tmp_path, day2)
    assert (second["dispute_holds_opened"], second["dispute_holds_closed_on_paid"]) == (0, 2)
    assert _holds(ledger) == [
        ("INV-0001", "ingest:t", "dispute", AS_OF),
        ("INV-0003", "collector", "dispute", AS_OF),
    ]

    third = _load(ledger, tmp_path, day2)  # the same export again: nothing opens, nothing closes, no churn
    assert (third["dispute_holds_opened"], third["dispute_holds_closed_on_paid"]) == (0, 0)
    assert len(_holds(ledger)) == 2

    with ledger.connect() as conn:
        audited = [
            json.loads(d)["counts"]["dispute_holds_closed_on_paid"]
            for d in conn.execute(
                text("SELECT details FROM audit_log WHERE action = 'ingest.merged' ORDER BY id")
            ).scalars()
        ]
    assert audited == [0, 2, 0]


def test_payment_plan_and_holds_on_open_invoices_stay(ledger, tmp_path) -> None:
    plan = '"No","","Yes"'
    line = invoice_line(1).replace('"No","","No"', plan, 1)
    _load(ledger, tmp_path, [_disputed(invoice_line(2)), line])
    counts = _load(
        ledger,
        tmp_path,
        [_disputed(invoice_line(2)), invoice_line(1, **{"Open Balance": "0.00"}).replace('"No","","No"', plan, 1)],
    )
    assert counts["dispute_holds_closed_on_paid"] == 0
    assert [(ref, kind, end) for ref, _note, kind, end in _holds(ledger)] == [
        ("INV-0001", "payment_plan", None),
        ("INV-0002", "dispute", None),
    ]
