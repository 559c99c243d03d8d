"""``python -m writeoffs reconcile``: the subcommand (:func:`register`, called by :mod:`writeoffs.cli`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from writeoffs.reconcile.model import Tolerances
from writeoffs.reconcile.run import reconcile
from writeoffs.report_store import location


def register(subparsers: Any) -> None:
    """``python -m writeoffs reconcile --as-of 2026-11-24 [--tolerance USD=0.01] [--run-key KEY]``."""
    p = subparsers.add_parser("reconcile", help="reconcile sub-ledger and GL; exit 1 when there are breaks")
    p.add_argument("--as-of", required=True, type=date.fromisoformat, help="business date (YYYY-MM-DD)")
    p.add_argument("--tolerance", default="", help="per-currency tolerances, e.g. USD=0.01,EUR=0.01,default=0")
    p.add_argument("--run-key", default=None, help="default: cli:<as-of>")
    p.set_defaults(func=_cmd_reconcile)


def _cmd_reconcile(args: Any) -> int:
    from writeoffs.db.engine import make_engine

    result = reconcile(
        make_engine(args.ledger_url),
        args.as_of,
        run_key=args.run_key or f"cli:{args.as_of.isoformat()}",
        tolerance=Tolerances.parse(args.tolerance),
    )
    print(result.headline())
    if result.report_path:
        print(f"report: {location(result.report_path)}")
    return 1 if result.break_count else 0
