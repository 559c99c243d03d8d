"""Command line: ``python -m writeoffs <command>``. Errors print one clear line, not a stack trace."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from typing import NoReturn

from sqlalchemy import Engine

from writeoffs.errors import InputError, WriteoffError

log = logging.getLogger("writeoffs")

Handler = Callable[[argparse.Namespace], int]


def _engine(args: argparse.Namespace) -> Engine:
    """An existing ledger: a command on a ledger never initialised says so and creates nothing."""
    from writeoffs.db.engine import open_ledger

    return open_ledger(args.ledger_url)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line too (``error: argument --as-of: ...``), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message[:300]}\n")


def cmd_init_db(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import make_engine
    from writeoffs.db.migrate import upgrade

    engine = make_engine(args.ledger_url)
    upgrade(engine)
    print(f"ledger ready at {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from writeoffs.report import ledger_summary

    print(ledger_summary(_engine(args)))
    return 0


def cmd_trail(args: argparse.Namespace) -> int:
    from writeoffs.report import invoice_trail

    print(invoice_trail(_engine(args), args.invoice_ref, args.entity))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from writeoffs.demo import run_demo

    return run_demo(args)


def cmd_clear_reversal(args: argparse.Namespace) -> int:
    """A person clears a reversed invoice so the policy may propose it again. The actor is the OS account running
    the command (never a parameter); the reason is required and audited."""
    from writeoffs.identity import os_actor
    from writeoffs.reversal import clear_reversal

    actor = os_actor()
    with _engine(args).begin() as conn:
        clear_reversal(conn, invoice_ref=args.invoice_ref, entity_code=args.entity, reason=args.reason, actor=actor)
    print(f"{args.invoice_ref} ({args.entity}) cleared by {actor}: open again, selection may propose it")
    return 0


def parse_date(text: str, option: str = "--as-of"):
    """A date option as YYYY-MM-DD, or one clear line (an InputError, exit 2) naming the option and the value."""
    from datetime import date

    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InputError(f"{option} {text[:40]!r} is not a date in the form YYYY-MM-DD") from None


def cmd_export_beancount(args: argparse.Namespace) -> int:
    from pathlib import Path

    from writeoffs.beancount_export import bean_check, write_exports

    as_of = parse_date(args.as_of) if args.as_of else None
    written = write_exports(_engine(args), Path(args.out), as_of=as_of)
    failed = 0
    for path, exp in written:
        print(f"{exp.view} view: {exp.entries} entries, {exp.assertions} balance assertions -> {path}")
        if args.check:
            result = bean_check(path)
            if result.returncode:
                failed += 1
                print(result.stdout + result.stderr, file=sys.stderr)
            else:
                print("  bean-check: OK")
    return 1 if failed else 0


def cmd_export_journal(args: argparse.Namespace) -> int:
    """A posted batch as the journal-import file an external GL reads (``writeoffs.gl_export``: one CSV, its
    ``.sha256`` beside it, same batch => same bytes)."""
    from pathlib import Path

    from writeoffs.gl_export import export_batch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _engine(args).connect() as conn:
        result = export_batch(conn, args.batch, out)
    print(f"batch {args.batch}: {result.entries} entries, {result.lines} lines -> {result.path}")
    print(f"sha256 {result.sha256}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m writeoffs", description=__doc__)
    parser.add_argument("--ledger-url", help="SQLAlchemy URL of the ledger (default: $WRITEOFFS_LEDGER_URL or SQLite)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("init-db", help="create or upgrade the ledger schema").set_defaults(func=cmd_init_db)
    sub.add_parser("summary", help="print a ledger summary").set_defaults(func=cmd_summary)
    trail = sub.add_parser("trail", help="an invoice's write-off trail: evidence, approvals, journal, recoveries")
    trail.add_argument("invoice_ref")
    trail.add_argument("--entity")
    trail.set_defaults(func=cmd_trail)
    demo = sub.add_parser("demo", help="the main job end to end on the embedded default")
    demo.add_argument("--invoices", type=int, default=20_000, help="sample size (default 20,000)")
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(func=cmd_demo)
    bean = sub.add_parser("export-beancount", help="posted GL as beancount files (transaction + functional view)")
    bean.add_argument("--out", required=True, help="beancount file; the functional view is written beside it")
    bean.add_argument("--as-of", help="balance assertions the day after (default: last posting)")
    bean.add_argument("--check", action="store_true", help="run bean-check on both files (exit 1 if it fails)")
    bean.set_defaults(func=cmd_export_beancount)
    journal = sub.add_parser(
        "export-journal", help="a posted batch as a journal-import CSV for an external GL, with its .sha256"
    )
    journal.add_argument("--batch", type=int, required=True, help="write-off batch id")
    journal.add_argument("--out", required=True, help="directory (created if missing)")
    journal.set_defaults(func=cmd_export_journal)
    clear = sub.add_parser(
        "clear-reversal", help="a reversed invoice may be proposed again (audited; actor = the OS user)"
    )
    clear.add_argument("invoice_ref")
    clear.add_argument("--entity", required=True)
    clear.add_argument("--reason", required=True, help="why the hold is lifted (recorded in the audit log)")
    clear.set_defaults(func=cmd_clear_reversal)
    for module in _EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


#: Feature modules that add subcommands: each exposes ``register(subparsers)``. One line per module.
_EXTENSIONS: list[str] = [
    "writeoffs.sample.cli",
    "writeoffs.policy.cli",
    "writeoffs.reconcile",
    "writeoffs.ingest.cli",
    "writeoffs.kpi_cli",
    "writeoffs.audit_anchor",
    "writeoffs.db.roles",
    "writeoffs.subledger_cli",
]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except WriteoffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
