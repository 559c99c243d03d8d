"""``python -m writeoffs ingest``: stage, merge and age configured sources for a business date."""

from __future__ import annotations

import argparse
import json


def cmd_ingest(args: argparse.Namespace) -> int:
    from writeoffs.cli import parse_date
    from writeoffs.db.engine import open_ledger
    from writeoffs.ingest import config as source_config
    from writeoffs.ingest.pipeline import run

    as_of = parse_date(args.as_of)
    cfg = source_config.load(args.config)
    # The same staging -> validation gate -> merge as the DAG: a blocked batch raises ValidationBlocked (one line,
    # exit 2 from writeoffs.cli.main) and nothing is merged.
    result = run(open_ledger(args.ledger_url), cfg, as_of, names=args.source or None)
    print(json.dumps(result, indent=2, default=str))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ingest", help="ingest AR data from configured sources, merge and age it")
    p.add_argument("--as-of", required=True, help="business date YYYY-MM-DD")
    p.add_argument("--source", action="append", help="source name from sources.yaml (repeatable; default: all)")
    p.add_argument("--config", help="source config (default: $WRITEOFFS_SOURCES_CONFIG or include/config/sources.yaml)")
    p.set_defaults(func=cmd_ingest)
