"""Account roles, the default chart of accounts, reason -> expense account, and resolving them for an entity.

An entry never names an account code directly: it asks an :class:`Accounts` for a role (``ar_control``, ``cash``,
...) or for the expense account of a write-off reason. :func:`resolve_accounts` builds that map for one entity from
its chart (``accounts.role``) and, for write-offs, from the reason map of the **policy version recorded on the
batch** (:func:`accounts_for_batch`), never from whatever policy file is on disk at posting time.

Fail closed: a role the chart does not define, a reason the policy does not map, or a mapped code that is not in
the entity's chart is refused with the entity, role or reason and code named. Nothing falls back to a default
account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import Connection, Join, Table, and_, select

from writeoffs.db.schema import ACCOUNT_ROLES, accounts, journal_entries, journal_lines, legal_entities
from writeoffs.errors import ConfigError, LedgerError


class Role(StrEnum):
    """What an account is for. Entries ask for roles, the chart says which account plays each."""

    AR_CONTROL = "ar_control"
    BAD_DEBT_EXPENSE = "bad_debt_expense"  # the allowance true-up's expense; write-offs use the reason's account
    ALLOWANCE = "allowance"  # Allowance for Doubtful Accounts (contra-asset)
    RECOVERY_INCOME = "recovery_income"  # direct method: cash on a written-off amount
    CASH = "cash"
    UNAPPLIED_CASH = "unapplied_cash"  # liability: cash received beyond what can be applied, to apply or refund
    SUSPENSE = "suspense"  # counter-account of AR sync and opening balances (the ERP's side of AR)


#: Roles the ``accounts.role`` column can carry (its CHECK constraint dates from migration 0001). A role outside it
#: is played by the account code in :data:`ROLE_DEFAULT_CODES`, which must exist in the entity's chart.
CHART_ROLES: tuple[str, ...] = ACCOUNT_ROLES
ROLE_DEFAULT_CODES: dict[Role, str] = {Role.UNAPPLIED_CASH: "2100"}


class PostedLines(NamedTuple):
    """:func:`posted_lines`: the join to select from, and its tables (``l`` lines, ``e`` entries, ``a`` accounts)."""

    join: Join
    l: Any  # noqa: E741 - the lines (alias l)
    e: Any
    a: Any


def _check_role(role: str) -> None:
    if role not in CHART_ROLES:
        raise ValueError(f"not a chart role: {role!r}")


def posted_condition(ln: Any, e: Any, through: Any = None) -> Any:
    """Join condition (Core): the journal line ``ln`` belongs to the entry ``e``, and ``e`` is posted (on or before
    ``through``, a date or bind parameter, when given)."""
    cond = and_(e.c.id == ln.c.entry_id, e.c.status == "posted")
    return cond if through is None else and_(cond, e.c.posting_date <= through)


def role_condition(ln: Any, a: Any, role: str) -> Any:
    """Join condition (Core): the journal line ``ln`` is on the account ``a``, and ``a`` plays the chart role
    ``role``."""
    _check_role(role)
    return and_(a.c.entity_code == ln.c.entity_code, a.c.code == ln.c.account_code, a.c.role == role)


def posted_lines_join(ln: Any, e: Any, a: Any, role: str, *, through: Any = None) -> Join:
    """The one home of "an account's posted lines" (SQLAlchemy Core): the journal lines ``ln`` of posted entries
    ``e`` (on or before ``through``, when given) on accounts ``a`` of the chart role ``role`` - the lines whose sum
    is that account's balance in the GL. ``ln``, ``e``, ``a``: ``journal_lines``, ``journal_entries``, ``accounts``
    or aliases of them."""
    return ln.join(e, posted_condition(ln, e, through)).join(a, role_condition(ln, a, role))


def posted_lines(role: str, *, through: Any = None) -> PostedLines:
    """:func:`posted_lines_join` on the aliases ``l``, ``e`` and ``a``, returned with the join."""
    lines: Table = journal_lines.alias("l")  # type: ignore[assignment]
    entries: Table = journal_entries.alias("e")  # type: ignore[assignment]
    accts: Table = accounts.alias("a")  # type: ignore[assignment]
    return PostedLines(posted_lines_join(lines, entries, accts, role, through=through), lines, entries, accts)


#: Default chart of accounts created for a new entity: (code, name, type, role).
DEFAULT_CHART: tuple[tuple[str, str, str, str | None], ...] = (
    ("1000", "Cash", "asset", "cash"),
    ("1100", "Accounts Receivable (control)", "asset", "ar_control"),
    ("1190", "Allowance for Doubtful Accounts", "contra_asset", "allowance"),
    ("2100", "Unapplied Cash", "liability", None),
    ("2990", "Suspense", "liability", "suspense"),
    ("4900", "Bad Debt Recovery Income", "income", "recovery_income"),
    ("6100", "Bad Debt Expense", "expense", "bad_debt_expense"),
    ("6110", "Bad Debt Expense - Bankruptcy", "expense", None),
    ("6120", "Bad Debt Expense - Small Balances", "expense", None),
    ("6130", "Bad Debt Expense - Settlements and Disputes", "expense", None),
)

#: Default GL expense account per write-off reason (direct method), matching :data:`DEFAULT_CHART`. The policy file
#: may remap them; its validated map (every reason present) is what posting uses.
DEFAULT_REASON_ACCOUNTS: dict[str, str] = {
    "uncollectible_after_collections": "6100",
    "bankruptcy": "6110",
    "customer_dissolved": "6100",
    "small_balance": "6120",
    "settlement_remainder": "6130",
    "dispute_lost": "6130",
    "statute_expired": "6100",
}


@dataclass(frozen=True, slots=True)
class Accounts:
    """The accounts of one entity, by role and by write-off reason. Asking for anything unmapped is refused."""

    entity: str
    method: str  # 'direct' | 'allowance'
    functional_currency: str
    roles: Mapping[str, str]
    reasons: Mapping[str, str] = field(default_factory=dict)
    policy_ref: str = ""  # where the reason map came from, for messages

    def role(self, role: Role | str) -> str:
        code = self.roles.get(str(role))
        if code is None:
            hint = (
                f"account {ROLE_DEFAULT_CODES[Role(role)]} is missing from its chart"
                if Role(role) in ROLE_DEFAULT_CODES
                else "no account in its chart has that role"
            )
            raise LedgerError(f"entity {self.entity} has no account for role {str(role)!r}: {hint}")
        return code

    def expense_for(self, reason: str) -> str:
        code = self.reasons.get(reason)
        if code is None:
            raise LedgerError(
                f"entity {self.entity}: write-off reason {reason!r} has no expense account in "
                f"{self.policy_ref or 'the reason map'}; posting refused"
            )
        return code

    def writeoff_debit(self, reason: str) -> str:
        """The account a write-off debits: the allowance (allowance method) or the reason's expense account."""
        return self.role(Role.ALLOWANCE) if self.method == "allowance" else self.expense_for(reason)


def check_postable(accts: Accounts, reasons: Iterable[str]) -> None:
    """What a batch needs to post, resolved or refused (fail closed, :class:`LedgerError`): the AR control account,
    the allowance under the allowance method, and the debit account of every reason among the batch's items,
    whatever their status. Posting checks this before the first entry; the confirm step shows what it found."""
    accts.role(Role.AR_CONTROL)
    if accts.method == "allowance":
        accts.role(Role.ALLOWANCE)
    for reason in sorted(set(reasons)):
        accts.writeoff_debit(reason)  # raises for a reason the batch's policy does not map


def resolve_accounts(
    conn: Connection,
    entity: str,
    *,
    reasons: Mapping[str, str] | None = None,
    policy_ref: str = "",
) -> Accounts:
    """The :class:`Accounts` of ``entity``; ``reasons`` (reason -> code) are checked against its chart."""
    ent = conn.execute(select(legal_entities).where(legal_entities.c.code == entity)).first()
    if ent is None:
        raise LedgerError(f"entity {entity!r} does not exist in the ledger")
    chart = {
        r.code: r.role
        for r in conn.execute(select(accounts.c.code, accounts.c.role).where(accounts.c.entity_code == entity))
    }
    roles = {role: code for code, role in chart.items() if role}
    for role, code in ROLE_DEFAULT_CODES.items():
        if str(role) not in roles and code in chart:
            roles[str(role)] = code
    mapped: dict[str, str] = {}
    if reasons is not None:
        missing = sorted(f"{r} -> {c}" for r, c in reasons.items() if c not in chart)
        if missing and ent.writeoff_method == "direct":
            raise LedgerError(
                f"entity {entity}: expense accounts {missing} of {policy_ref or 'the reason map'} are not in its "
                "chart of accounts"
            )
        mapped = dict(reasons)
    return Accounts(entity, ent.writeoff_method, ent.functional_currency, roles, mapped, policy_ref)


def batch_policy(conn: Connection, batch):
    """The policy a batch was selected under, re-validated from ``policy_versions`` (refused if missing or edited)."""
    from writeoffs.db.schema import policy_versions
    from writeoffs.policy.schema import parse_policy

    content = conn.execute(
        select(policy_versions.c.content).where(policy_versions.c.content_hash == batch.policy_hash)
    ).scalar()
    if content is None:
        raise ConfigError(
            f"batch {batch.id}: its policy version {batch.policy_version} ({batch.policy_hash[:12]}) is not recorded "
            "in policy_versions; posting refused (accounts come from the policy the batch was selected under)"
        )
    policy = parse_policy(content, source=f"policy_versions[{batch.policy_hash[:12]}]")
    if policy.content_hash != batch.policy_hash:
        raise ConfigError(
            f"batch {batch.id}: the recorded policy content hashes to {policy.content_hash[:12]}, not "
            f"{batch.policy_hash[:12]}; posting refused"
        )
    return policy


def accounts_for_batch(conn: Connection, batch, policy=None) -> Accounts:
    """The accounts a batch posts to: its entity's chart and the reason map of the policy version it recorded."""
    policy = policy or batch_policy(conn, batch)
    return resolve_accounts(
        conn,
        batch.entity_code,
        reasons={str(k): v for k, v in policy.model.reasons.items()},
        policy_ref=f"policy {policy.version} ({batch.policy_hash[:12]})",
    )
