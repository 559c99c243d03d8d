"""A checkpoint's copies are only safe while every change of what it copies is recorded: the attributes the
invoices trigger watches (migration 0017, frozen history) must be the ones the checkpoint copies, and the summary may
group only by copied attributes. Adding a copied attribute without a migration that watches it fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from writeoffs.subledger.checkpoint import CHECKPOINT_ATTRIBUTES, SUMMARY_GROUPS

VERSIONS = Path(__file__).resolve().parents[2] / "include" / "writeoffs" / "db" / "migrations" / "versions"


def _watched() -> set[str]:
    spec = importlib.util.spec_from_file_location("_m0017", VERSIONS / "0017_checkpoint_attributes.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return set(module.ATTRIBUTES)


def test_the_trigger_watches_every_copied_attribute() -> None:
    assert set(CHECKPOINT_ATTRIBUTES) == _watched()


def test_the_summary_groups_by_copied_attributes_only() -> None:
    assert set(SUMMARY_GROUPS) <= set(CHECKPOINT_ATTRIBUTES)
