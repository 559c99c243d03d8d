"""The sub-ledger page's question and answer: "balance of X as of D" and "what changed between D1 and D2".

The form's text is parsed here (hostile: every value is cut, dates and the level are checked, and a bad one is a
:class:`~writeoffs.errors.InputError` with one clear line for the page, never a stack trace). The answers come from
:mod:`writeoffs.subledger`, the functions the ``balance`` and ``changes`` CLI commands call (one home for every
query); this module only decides which of them to ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection

from writeoffs.errors import InputError

#: Most balance rows a page shows (invoice and customer levels can be a million rows: the CLI lists them all).
ROW_LIMIT = 500
#: Longest filter value accepted (the ledger's key columns hold no longer one: a longer one is refused).
ENTITY_MAX, REF_MAX, CURRENCY_MAX = 40, 200, 10


@dataclass(frozen=True, slots=True)
class Ask:
    """What the form asks, checked. ``as_of`` and the range (``start``, ``end``) are each optional."""

    as_of: date | None = None
    known_on: date | None = None
    level: str = "entity"
    entity: str | None = None
    customer: str | None = None
    invoice: str | None = None
    currency: str | None = None
    start: date | None = None
    end: date | None = None

    @property
    def asked(self) -> bool:
        return self.as_of is not None or self.start is not None

    def scope(self) -> dict[str, Any]:
        """The filters and "as known", as :func:`writeoffs.subledger.balances_as_of` names them."""
        return {
            "entity": self.entity,
            "currency": self.currency,
            "customer_ref": self.customer,
            "invoice_ref": self.invoice,
            "known": self.known_on,
        }


@dataclass(slots=True)
class Answer:
    balances: list = field(default_factory=list)  # writeoffs.subledger.Balance, at most ROW_LIMIT
    more: bool = False  # more rows than shown
    changes: list = field(default_factory=list)  # writeoffs.subledger.Change
    ends_level: str = "entity"
    at_start: list = field(default_factory=list)
    at_end: list = field(default_factory=list)
    movements: list[dict[str, Any]] | None = None  # None: no invoice (with its entity) asked


def _text(form: dict[str, str], name: str, limit: int) -> str | None:
    # Refused, not cut: a cut value could be the prefix of another key the ledger holds, and show its balance.
    value = (form.get(name) or "").strip()
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters: no {name} in the ledger has such a key")
    return value or None


def _day(form: dict[str, str], name: str, label: str) -> date | None:
    from writeoffs.cli import parse_date

    text = (form.get(name) or "").strip()
    return parse_date(text, label) if text else None


def parse(form: dict[str, str]) -> Ask:
    """The form's values checked, or an InputError naming the field and what is wrong with it."""
    from writeoffs.subledger import LEVELS

    level = (form.get("level") or "entity").strip()
    if level not in LEVELS:
        raise InputError(f"level {level[:40]!r} is not one of {', '.join(LEVELS)}")
    ask = Ask(
        as_of=_day(form, "as_of", "as of"),
        known_on=_day(form, "known_on", "known on"),
        level=level,
        entity=_text(form, "entity", ENTITY_MAX),
        customer=_text(form, "customer", REF_MAX),
        invoice=_text(form, "invoice", REF_MAX),
        currency=_text(form, "currency", CURRENCY_MAX),
        start=_day(form, "from", "from"),
        end=_day(form, "to", "to"),
    )
    if (ask.start is None) != (ask.end is None):
        raise InputError("what changed needs both dates: from (after this day) and to (up to and including it)")
    if ask.start is not None and ask.end is not None and ask.end < ask.start:
        raise InputError(f"to {ask.end} is before from {ask.start}")
    if ask.known_on is not None and ask.known_on >= date.max:
        raise InputError(f"known on {ask.known_on} is beyond the last day the ledger can compare with")
    return ask


def answer(conn: Connection, ask: Ask) -> Answer:
    """Ask the sub-ledger, on ``conn`` (one snapshot, so both ends and the changes agree)."""
    from writeoffs.subledger import balances_as_of, changes_between, changes_level, invoice_history

    out = Answer()
    scope = ask.scope()
    if ask.as_of is not None:
        rows = balances_as_of(conn, ask.as_of, level=ask.level, limit=ROW_LIMIT + 1, **scope)  # type: ignore[arg-type]
        out.balances, out.more = rows[:ROW_LIMIT], len(rows) > ROW_LIMIT
    if ask.start is not None and ask.end is not None:
        out.changes = changes_between(conn, ask.start, ask.end, **scope)
        out.ends_level = changes_level(ask.customer, ask.invoice)
        out.at_start = balances_as_of(conn, ask.start, level=out.ends_level, **scope)  # type: ignore[arg-type]
        out.at_end = balances_as_of(conn, ask.end, level=out.ends_level, **scope)  # type: ignore[arg-type]
    if ask.invoice and ask.entity:
        through = ask.end if ask.end is not None else ask.as_of
        out.movements = invoice_history(
            conn, ask.entity, ask.invoice, after=ask.start, through=through, known=ask.known_on
        )
    return out
