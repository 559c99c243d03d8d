"""``python -m writeoffs generate`` (source files) and ``python -m writeoffs seed`` (straight into the ledger)."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from writeoffs.errors import InputError
from writeoffs.sample.generator import DEFAULT_AS_OF, DEFAULT_SEED


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--as-of must be YYYY-MM-DD, got {text!r}") from exc


def _progress(line: str) -> None:
    print(line, flush=True)


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--invoices", type=int, default=20_000, help="number of invoices (default 20,000; up to 10M)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--as-of", type=_as_of, default=DEFAULT_AS_OF, help=f"business date, YYYY-MM-DD (default {DEFAULT_AS_OF})"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")


def cmd_generate(args: argparse.Namespace) -> int:
    from writeoffs.sample import SampleSpec, parse_formats, write_sample

    spec = SampleSpec(invoices=args.invoices, seed=args.seed, as_of=args.as_of)
    formats = parse_formats(args.formats)
    if args.page_size < 1:
        raise InputError(f"--page-size must be positive, got {args.page_size}", field="page_size")
    result = write_sample(
        spec, Path(args.out), formats, page_size=args.page_size, progress=None if args.quiet else _progress
    )
    print(result.summary())
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import make_engine
    from writeoffs.db.migrate import upgrade
    from writeoffs.sample import SampleSpec, seed_ledger

    spec = SampleSpec(invoices=args.invoices, seed=args.seed, as_of=args.as_of)
    engine = make_engine(args.ledger_url)
    try:
        if not args.quiet:
            _progress(f"migrating the ledger at {engine.url.render_as_string(hide_password=True)}")
        upgrade(engine)
        result = seed_ledger(engine, spec, progress=None if args.quiet else _progress)
    finally:
        engine.dispose()
    print(result.summary())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser("generate", help="write the sample ERP data (CSV export, SQLite source, API pages)")
    _spec_args(gen)
    gen.add_argument("--out", required=True, help="output directory")
    gen.add_argument("--formats", default="csv,sqlite,api", help="comma-separated subset of csv,sqlite,api")
    gen.add_argument("--page-size", type=int, default=1_000, help="rows per API page (default 1,000)")
    gen.set_defaults(func=cmd_generate)
    seed = subparsers.add_parser("seed", help="load the sample into the ledger (--ledger-url) and post opening AR")
    _spec_args(seed)
    seed.set_defaults(func=cmd_seed)
