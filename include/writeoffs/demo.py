"""``make demo``: the main job end to end on the embedded default (SQLite ledger).

Stages are added as the pipeline grows; each stage logs what it did so a first-time user can follow along.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import date

from writeoffs.db.engine import make_engine
from writeoffs.db.migrate import upgrade
from writeoffs.report import ledger_summary

log = logging.getLogger("writeoffs.demo")

DEMO_AS_OF = date(2026, 11, 24)


def run_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    engine = make_engine(args.ledger_url)
    log.info("1/2 migrating the ledger at %s", engine.url.render_as_string(hide_password=True))
    upgrade(engine)
    log.info("2/2 summary")
    print(ledger_summary(engine))
    log.info("demo finished in %.1f s", time.perf_counter() - started)
    return 0
