# ruff: noqa: E501 - inline SQL fixtures and JSON rows read better unwrapped
"""Regenerate the bad-input corpus: ``python tests/data/bad_inputs/make_corpus.py``.

Each file is small and hand-shaped to break exactly one thing; the expected outcome of each is in
tests/integration/test_ingest_corpus.py (CASES). Files are committed; this script documents how they were made.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
BOM = "\ufeff"
INV_HEADER = [
    "Company", "Invoice No", "Customer No", "Customer Name", "Parent Customer No", "Segment", "Invoice Date",
    "Due Date", "Currency", "Amount", "Open Balance", "FX Rate", "Disputed", "Dispute Since", "Payment Plan",
    "Bankrupt", "Transferred To Parent", "Description",
]  # fmt: skip
PAY_HEADER = [
    "Company",
    "Payment No",
    "Customer No",
    "Payment Date",
    "Currency",
    "Amount",
    "Invoice No",
    "Applied Amount",
]
ACT_HEADER = ["Company", "Customer No", "Invoice No", "Activity", "Date", "End Date", "Outcome"]


def good(n: int, **over: str) -> dict[str, str]:
    row = {
        "Company": "US01", "Invoice No": f"INV-{n:04d}", "Customer No": "C-001", "Customer Name": "Northwind",
        "Parent Customer No": "", "Segment": "it_services", "Invoice Date": "09/15/2025", "Due Date": "10/15/2025",
        "Currency": "USD", "Amount": "45,000.00", "Open Balance": "45,000.00", "FX Rate": "", "Disputed": "No",
        "Dispute Since": "", "Payment Plan": "No", "Bankrupt": "No", "Transferred To Parent": "No",
        "Description": "consulting",
    }  # fmt: skip
    row.update(over)
    return row


def q(v: str) -> str:
    return '"' + v.replace('"', '""') + '"'


def csv_text(header: list[str], rows: list[dict[str, str]], sep: str = ",") -> str:
    lines = [sep.join(q(h) for h in header)]
    lines += [sep.join(q(r.get(h, "")) for h in header) for r in rows]
    return "\n".join(lines) + "\n"


def inv(name: str, rows: list[dict[str, str]], header: list[str] = INV_HEADER, sep: str = ",") -> None:
    (HERE / name).write_text(BOM + csv_text(header, rows, sep), encoding="utf-8")


def main() -> None:
    ok = [good(1), good(2)]
    inv("good_invoices.csv", ok)
    inv("missing_column.csv", ok, [h for h in INV_HEADER if h != "Open Balance"])
    renamed = ["Invoice Number" if h == "Invoice No" else h for h in INV_HEADER]
    (HERE / "renamed_column.csv").write_text(
        BOM + csv_text(renamed, [{("Invoice Number" if k == "Invoice No" else k): v for k, v in r.items()} for r in ok])
    )
    dup = [*INV_HEADER, "Amount"]
    (HERE / "duplicate_header.csv").write_text(BOM + csv_text(dup, ok))
    (HERE / "empty.csv").write_bytes(b"")
    (HERE / "header_only.csv").write_text(BOM + csv_text(INV_HEADER, []))
    inv("wrong_delimiter.csv", ok, sep=";")
    inv("non_numeric_amount.csv", [good(1), good(2, Amount="abc")])
    inv("negative_amount.csv", [good(1), good(2, Amount="-100.00", **{"Open Balance": "0.00"})])
    inv("nan_amount.csv", [good(1), good(2, **{"Open Balance": "NaN"})])
    inv("impossible_date.csv", [good(1), good(2, **{"Invoice Date": "02/31/2026", "Due Date": "03/31/2026"})])
    inv("iso_date_in_us_file.csv", [good(1), good(2, **{"Due Date": "2025-10-15"})])
    inv("two_digit_year.csv", [good(1), good(2, **{"Invoice Date": "09/15/25"})])
    inv("unknown_currency.csv", [good(1), good(2, Currency="XYZ")])
    inv("duplicate_invoice_ids.csv", [good(1), good(2), good(2, Amount="10.00", **{"Open Balance": "10.00"})])
    inv("balance_above_amount.csv", [good(1), good(2, **{"Open Balance": "50,000.00"})])
    inv("missing_invoice_no.csv", [good(1), good(2, **{"Invoice No": ""})])
    inv("bad_flag.csv", [good(1), good(2, Disputed="Maybe")])
    inv("due_before_invoice.csv", [good(1), good(2, **{"Due Date": "09/01/2025"})])
    inv("unknown_entity.csv", [good(1), good(2, Company="XX99")])
    inv("missing_fx_rate.csv", [good(1), good(2, Company="EU01", Currency="GBP")])
    inv("zero_fx_rate.csv", [good(1), good(2, Company="EU01", Currency="GBP", **{"FX Rate": "0"})])
    inv("fx_rate_on_functional_currency.csv", [good(1), good(2, **{"FX Rate": "1.2"})])
    inv("too_many_decimals.csv", [good(1), good(2, Amount="45000.12345")])
    # Currency minor units and the ledger's largest amount: refused, never rounded (writeoffs.money)
    inv("usd_three_decimals.csv", [good(1), good(2, Amount="1,234.567", **{"Open Balance": "1,234.567"})])
    jpy = {"Company": "US01", "Currency": "JPY", "FX Rate": "0.0067"}
    inv("jpy_with_decimals.csv", [good(1), good(2, Amount="556", **jpy, **{"Open Balance": "556.25"})])
    inv(
        "kwd_three_decimals_ok.csv",
        [good(1), good(2, Amount="1.234", **{"Currency": "KWD", "FX Rate": "3.25", "Open Balance": "1.234"})],
    )
    inv("amount_above_max.csv", [good(1), good(2, Amount="100,000,000,000,000.00", **{"Open Balance": "0.00"})])
    inv("european_number_format.csv", [good(1), good(2, Amount="45.000,00", **{"Open Balance": "45.000,00"})])
    inv("invoice_no_too_long.csv", [good(1), good(2, **{"Invoice No": "X" * 80})])
    inv("text_in_fx_rate.csv", [good(1), good(2, Company="EU01", Currency="GBP", **{"FX Rate": "n/a"})])
    inv(
        "several_bad_rows.csv",
        [good(1), good(2, Amount="abc"), good(3, Currency="XYZ"), good(4), good(5, **{"Due Date": "13/45/2025"})],
    )
    text = BOM + csv_text(INV_HEADER, ok)
    (HERE / "truncated.csv").write_text(text + text.splitlines()[-1][:40], encoding="utf-8")
    extra = text.splitlines()
    extra.insert(2, extra[2] + ',"surplus"')
    (HERE / "extra_field_in_row.csv").write_text("\n".join(extra) + "\n", encoding="utf-8")
    unterminated = text.splitlines()
    unterminated.append('"US01","INV-0003,"C-001"')
    (HERE / "unterminated_quote.csv").write_text("\n".join(unterminated) + "\n", encoding="utf-8")
    latin = csv_text(INV_HEADER, [good(1), good(2, **{"Customer Name": "Société Générale"})])
    (HERE / "wrong_encoding_latin1.csv").write_bytes(latin.encode("latin-1"))
    # issue 15: every physical record accounted for, explicit formats, hostile text (one class per file)
    plain = [",".join(INV_HEADER)] + [
        ",".join(good(n, Amount="1000.00", **{"Open Balance": "1000.00"}).values()) for n in range(1, 21)
    ]
    stray = list(plain)
    stray[6] = stray[6].replace(",Northwind,", ',"Northwind,')
    (HERE / "stray_quote_swallows_rows.csv").write_text("\n".join(stray) + "\n", encoding="utf-8")
    inv("quoted_line_break.csv", [good(1), good(2, Description="two\nlines")])
    (HERE / "cr_only_line_endings.csv").write_bytes(csv_text(INV_HEADER, ok).replace("\n", "\r").encode())
    inv("nul_byte_in_field.csv", [good(1), good(2, Description="bad\x00byte")])
    (HERE / "utf16_export.csv").write_bytes(csv_text(INV_HEADER, ok).encode("utf-16"))
    inv("decimal_comma_ambiguous.csv", [good(1), good(2, Amount="12,34", **{"Open Balance": "12,34"})])
    inv("year_0023.csv", [good(1), good(2, **{"Invoice Date": "09/15/0023"})])
    inv("due_date_far_future.csv", [good(1), good(2, **{"Due Date": "10/15/2925"})])
    inv("huge_field.csv", [good(1), good(2, Description="x" * 100_000)])
    (HERE / "blank_lines.csv").write_text(BOM + csv_text(INV_HEADER, ok).replace("\n", "\n\n", 1) + "\n\n")
    (HERE / "crlf_line_endings.csv").write_bytes((BOM + csv_text(INV_HEADER, ok)).replace("\n", "\r\n").encode())
    inv("formula_in_customer_name.csv", [good(1), good(2, **{"Customer Name": '=HYPERLINK("http://x","y")'})])
    inv("markdown_link_in_name.csv", [good(1), good(2, **{"Customer Name": "[pay](http://x) `z`"})])
    inv("padded_amount.csv", [good(1), good(2, Amount="  1,000.00 ", **{"Open Balance": " 1,000.00"})])
    inv("currency_symbol_in_amount.csv", [good(1), good(2, Amount="$1,000.00")])
    inv("parenthesised_negative.csv", [good(1), good(2, Amount="(100.00)", **{"Open Balance": "0.00"})])
    inv("trailing_minus_amount.csv", [good(1), good(2, Amount="100.00-", **{"Open Balance": "0.00"})])
    inv("exponent_amount.csv", [good(1), good(2, Amount="1e3", **{"Open Balance": "1e3"})])
    inv("misplaced_thousands.csv", [good(1), good(2, Amount="1,00.00")])
    inv("date_with_time.csv", [good(1), good(2, **{"Invoice Date": "09/15/2025 10:00"})])
    inv("blank_required_field.csv", [good(1), good(2, **{"Customer No": "   "})])
    inv("arabic_digits_amount.csv", [good(1), good(2, Amount="\u0661\u0662\u0663")])
    inv("escaped_quotes_ok.csv", [good(1), good(2, **{"Customer Name": 'Acme "Best" Co'})])
    trailing = csv_text(INV_HEADER, ok).splitlines()
    trailing[2] += ","
    (HERE / "trailing_delimiter.csv").write_text("\n".join(trailing) + "\n", encoding="utf-8")
    inv("zero_width_in_currency.csv", [good(1), good(2, Currency="US\u200bD")])
    inv("dispute_since_year_0023.csv", [good(1), good(2, Disputed="Yes", **{"Dispute Since": "01/01/0023"})])
    # payments and activities
    pay = {"Company": "US01", "Payment No": "P-1", "Customer No": "C-001", "Payment Date": "11/01/2026",
           "Currency": "USD", "Amount": "100.00", "Invoice No": "INV-0001", "Applied Amount": "100.00"}  # fmt: skip
    (HERE / "payment_applied_above_amount.csv").write_text(csv_text(PAY_HEADER, [{**pay, "Applied Amount": "150.00"}]))
    (HERE / "payment_inconsistent_rows.csv").write_text(
        csv_text(PAY_HEADER, [pay, {**pay, "Invoice No": "INV-0002", "Amount": "90.00", "Applied Amount": "10.00"}])
    )
    (HERE / "payment_applied_too_many_decimals.csv").write_text(
        csv_text(PAY_HEADER, [{**pay, "Applied Amount": "10.005"}])
    )
    (HERE / "payment_zero_amount.csv").write_text(
        csv_text(PAY_HEADER, [{**pay, "Amount": "0.00", "Applied Amount": ""}])
    )
    act = {"Company": "US01", "Customer No": "C-001", "Invoice No": "INV-0001", "Activity": "Call", "Date": "01/10/2026",
           "End Date": "", "Outcome": ""}  # fmt: skip
    (HERE / "activity_unknown_type.csv").write_text(csv_text(ACT_HEADER, [act, {**act, "Activity": "Fax"}]))
    (HERE / "activity_end_before_start.csv").write_text(
        csv_text(ACT_HEADER, [act, {**act, "Activity": "Agency Placement", "End Date": "01/01/2026"}])
    )
    # HTTP pages
    (HERE / "api_garbage.json").write_text('{"data": [ {"entity": "US01", ')
    (HERE / "api_no_data_key.json").write_text('{"items": [], "next": null}')
    (HERE / "api_not_objects.json").write_text('{"data": [42, "x"], "next": null}')
    (HERE / "control_wrong_as_of.json").write_text('{"as_of": "2026-11-23", "invoices": {"rows": 2}}')


if __name__ == "__main__":
    main()
