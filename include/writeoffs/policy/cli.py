"""CLI commands of the policy feature (registered through ``writeoffs.cli._EXTENSIONS``).

``python -m writeoffs whatif --policy draft.yaml --as-of 2026-06-30 [--json]``
``python -m writeoffs policy-check [FILE]``
``python -m writeoffs candidates --as-of 2026-11-24 [--policy FILE]`` (prepared by the OS account running it)
"""

from __future__ import annotations

import argparse
import json
from datetime import date


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--as-of {value!r} is not a date (YYYY-MM-DD)") from None


def cmd_whatif(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import open_ledger
    from writeoffs.policy.schema import load_policy
    from writeoffs.policy.whatif import whatif

    report = whatif(open_ledger(args.ledger_url), load_policy(args.policy), args.as_of)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from writeoffs.errors import ConfigError
    from writeoffs.policy.schema import load_policy, policy_path

    policy = load_policy(args.file)
    if args.against_ledger:
        from sqlalchemy import select, union

        from writeoffs.db.engine import open_ledger
        from writeoffs.db.schema import invoices, legal_entities

        with open_ledger(args.ledger_url).connect() as conn:
            used = set(
                conn.execute(
                    union(
                        select(legal_entities.c.functional_currency),
                        select(invoices.c.currency).where(invoices.c.open_balance > 0).distinct(),
                    )
                ).scalars()
            )
        missing = sorted(used - set(policy.model.approval.approval_currencies))
        if missing:
            raise ConfigError(
                f"{policy_path(args.file)}: the ledger has entities or open invoices in {', '.join(missing)}, which "
                "no approval tier has a limit for: write-offs in them could be approved by nobody; add them to "
                "approval.currencies with limits on every tier"
            )
    print(f"{policy_path(args.file)}: valid; version {policy.version}, content hash {policy.content_hash}")
    return 0


def cmd_candidates(args: argparse.Namespace) -> int:
    from writeoffs.db.engine import open_ledger
    from writeoffs.identity import os_actor
    from writeoffs.policy.batching import render_batch_table
    from writeoffs.policy.service import prepare

    out = prepare(open_ledger(args.ledger_url), args.as_of, policy_path=args.policy, prepared_by=os_actor())
    if out["policy_rejected"]:
        print(f"warning: policy file rejected, the active policy stays in force: {out['policy_rejected']}")
    print(
        f"policy {out['policy_version']} ({out['policy_hash'][:12]}): charged off {out['charge_off']['charged_off']}, "
        f"new candidates {out['inserted']}, skipped {out['skipped']}"
    )
    print(render_batch_table(out["batches"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("whatif", help="backtest a draft policy on a past as-of date (read-only)")
    p.add_argument("--policy", required=True, help="draft policy YAML file")
    p.add_argument("--as-of", required=True, type=_as_of, help="business date YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_whatif)

    p = sub.add_parser("policy-check", help="validate a policy file and print its version and content hash")
    p.add_argument("file", nargs="?", help="policy file (default: $WRITEOFFS_POLICY_PATH or include/config)")
    p.add_argument(
        "--against-ledger",
        action="store_true",
        help="also refuse the policy if the ledger has entities or open invoices in a currency it sets no limit for",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("candidates", help="charge off and select write-off candidates for an as-of date")
    p.add_argument("--as-of", required=True, type=_as_of)
    p.add_argument("--policy", help="policy file (default: $WRITEOFFS_POLICY_PATH or include/config)")
    p.set_defaults(func=cmd_candidates)


__all__ = ["register"]
