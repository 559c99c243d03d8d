"""CLI of the point-in-time sub-ledger (``writeoffs.subledger``), JSON on stdout (money as strings):

- ``python -m writeoffs balance --as-of D [--level invoice|customer|entity|currency] [--entity E] [--customer REF]
  [--invoice REF] [--currency CUR] [--known-on D]``: the balance of X as of D (as known today, or as known at the
  end of ``--known-on``);
- ``python -m writeoffs changes --from D1 --to D2 [same filters] [--known-on D]``: what changed after D1 up to D2,
  per entity, currency and kind, with the balances at both ends; with ``--invoice`` also the invoice's movements;
- ``python -m writeoffs aging-as-of --as-of D [--known-on D]``: the aging of D from the movements;
- ``python -m writeoffs subledger-vs-gl --as-of D``: sub-ledger open AR vs the GL AR control at D (exit 1 on a
  difference).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from decimal import Decimal
from typing import Any

from writeoffs.errors import InputError
from writeoffs.money import money_str


def _date(option: str):
    def parse(text: str) -> date:
        from writeoffs.cli import parse_date

        try:
            return parse_date(text, option)
        except InputError as exc:  # argparse turns this into its one-line usage error, exit 2
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--entity", help="legal entity code")
    p.add_argument("--customer", help="customer ref (within --entity if given)")
    p.add_argument("--invoice", help="invoice ref (within --entity if given)")
    p.add_argument("--currency", help="ISO currency code")
    p.add_argument("--known-on", type=_date("--known-on"), help="as the ledger knew it at the end of this day (UTC)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("balance", help="open balance of an invoice, customer, entity or currency as of a date")
    p.add_argument("--as-of", required=True, type=_date("--as-of"), help="business date (YYYY-MM-DD)")
    p.add_argument("--level", default="entity", choices=["invoice", "customer", "entity", "currency"])
    _filters(p)
    p.set_defaults(func=cmd_balance)

    p = subparsers.add_parser("changes", help="what moved in the sub-ledger between two dates")
    p.add_argument("--from", dest="start", required=True, type=_date("--from"), help="after this day")
    p.add_argument("--to", dest="end", required=True, type=_date("--to"), help="up to and including this day")
    _filters(p)
    p.set_defaults(func=cmd_changes)

    p = subparsers.add_parser("aging-as-of", help="the aging of a past date from the sub-ledger's movements")
    p.add_argument("--as-of", required=True, type=_date("--as-of"))
    p.add_argument("--known-on", type=_date("--known-on"), help="as the ledger knew it at the end of this day")
    p.set_defaults(func=cmd_aging)

    p = subparsers.add_parser("subledger-vs-gl", help="sub-ledger open AR vs GL AR control at a date")
    p.add_argument("--as-of", required=True, type=_date("--as-of"))
    p.set_defaults(func=cmd_vs_gl)


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "entity": args.entity,
        "currency": args.currency,
        "customer_ref": args.customer,
        "invoice_ref": args.invoice,
        "known": args.known_on,
    }


def _print(doc: dict[str, Any]) -> None:
    # JSON escapes whatever a source put into a reference (control characters included): safe on any terminal.
    print(json.dumps(doc, indent=2, default=_jsonable, ensure_ascii=True))


def _jsonable(value: object) -> str:
    if isinstance(value, Decimal):
        return money_str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _engine(args: argparse.Namespace):
    from writeoffs.db.engine import open_ledger

    return open_ledger(args.ledger_url)


def _balances(conn, day: date, level: str, scope: dict[str, Any]) -> list[dict[str, Any]]:
    from writeoffs.subledger import balances_as_of

    return [
        {"entity": b.entity, "currency": b.currency, level: b.key, "balance": b.balance, "open_invoices": b.invoices}
        for b in balances_as_of(conn, day, level=level, **scope)  # type: ignore[arg-type]
    ]


def cmd_balance(args: argparse.Namespace) -> int:
    with _engine(args).connect() as conn:
        rows = _balances(conn, args.as_of, args.level, _scope(args))
    _print({"as_of": args.as_of, "known_on": args.known_on or "today", "level": args.level, "balances": rows})
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    from writeoffs.subledger import changes_between, changes_level, invoice_history

    if args.end < args.start:
        raise InputError(f"--to {args.end} is before --from {args.start}")
    scope = _scope(args)
    level = changes_level(args.customer, args.invoice)
    with _engine(args).connect() as conn:
        changes = [
            {
                "entity": c.entity,
                "currency": c.currency,
                "kind": c.kind,
                "movements": c.movements,
                "invoices": c.invoices,
                "balance_change": c.balance_change,
            }
            for c in changes_between(conn, args.start, args.end, **scope)
        ]
        doc: dict[str, Any] = {
            "from": args.start,
            "to": args.end,
            "known_on": args.known_on or "today",
            "balance_at_from": _balances(conn, args.start, level, scope),
            "balance_at_to": _balances(conn, args.end, level, scope),
            "changes": changes,
        }
        if args.invoice and args.entity:
            doc["movements"] = invoice_history(
                conn, args.entity, args.invoice, after=args.start, through=args.end, known=args.known_on
            )
    _print(doc)
    return 0


def cmd_aging(args: argparse.Namespace) -> int:
    from writeoffs.subledger import aging_as_of

    with _engine(args).connect() as conn:
        _print({**aging_as_of(conn, args.as_of, known=args.known_on), "known_on": args.known_on or "today"})
    return 0


def cmd_vs_gl(args: argparse.Namespace) -> int:
    from writeoffs.subledger import compare_with_gl

    with _engine(args).connect() as conn:
        rows = compare_with_gl(conn, args.as_of)
    _print(
        {
            "as_of": args.as_of,
            "pairs": [
                {
                    "entity": r.entity,
                    "currency": r.currency,
                    "subledger": r.subledger,
                    "gl_ar_control": r.gl,
                    "difference": r.difference,
                }
                for r in rows
            ],
        }
    )
    return 1 if any(r.difference for r in rows) else 0
