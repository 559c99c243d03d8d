"""CLI: ``python -m writeoffs allowance --as-of D`` and ``python -m writeoffs kpi --from D --to D [--previous]``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "allowance", help="estimate the allowance for doubtful accounts as of a date and post the adjustment"
    )
    p.add_argument("--as-of", required=True, type=date.fromisoformat, help="business date (the sub-ledger as of it)")
    p.add_argument("--config", default=None, help="loss rates (default: $WRITEOFFS_ALLOWANCE_PATH or include/config)")
    p.set_defaults(func=cmd_allowance)

    p = subparsers.add_parser("kpi", help="write-off KPI report for a period (Markdown, JSON, tax-adviser CSV)")
    p.add_argument("--from", dest="start", required=True, type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="end", required=True, type=date.fromisoformat, help="last day, inclusive")
    p.add_argument("--previous", action="store_true", help="add the trend against the previous period of the same kind")
    p.set_defaults(func=cmd_kpi)


def cmd_allowance(args: argparse.Namespace) -> int:
    from writeoffs.allowance import load_config, run_allowance
    from writeoffs.db.engine import open_ledger
    from writeoffs.identity import os_actor

    result = run_allowance(open_ledger(args.ledger_url), args.as_of, config=load_config(args.config), actor=os_actor())
    print(json.dumps(result.summary(), indent=2))
    return 0


def cmd_kpi(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import open_ledger
    from writeoffs.kpi import headline, run_kpis

    if args.end < args.start:
        print(f"error: --to {args.end} is before --from {args.start}", file=sys.stderr)
        return 2
    report, files = run_kpis(open_ledger(args.ledger_url), args.start, args.end, previous=args.previous)
    print(headline(report))
    for name, path in files.summary().items():
        print(f"{name}: {path}")
    return 0
