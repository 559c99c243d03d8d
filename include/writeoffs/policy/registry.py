"""Which policy is in force: recorded versions (``policy_versions``) and activations (the audit log).

Every policy that decides anything is stored verbatim with its content hash. Activation is an audit event
(``policy.activate``), so the history of which policy was in force when is hash-chained and tamper-evident, and
reverting to an older file re-activates it (a ``loaded_at`` timestamp alone could not express that).

An invalid file never replaces the active policy: :func:`resolve_for_run` records the rejection (with the
field and reason) and keeps deciding with the last good policy, so a typo cannot silently loosen the rules nor
stop the month-end close; the rejection is in the audit log and in the task log for the alerting DAG to pick up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sqlalchemy import Connection, select

from writeoffs import audit
from writeoffs.db.schema import audit_log, policy_versions
from writeoffs.errors import ConfigError
from writeoffs.ledger import upsert_ignore
from writeoffs.policy.schema import Policy, load_policy, parse_policy

ACTIVATE = "policy.activate"
REJECT = "policy.rejected"


def record(conn: Connection, policy: Policy) -> bool:
    """Store the policy text under its hash (idempotent); True when it was new."""
    return (
        upsert_ignore(
            conn,
            policy_versions,
            [{"content_hash": policy.content_hash, "version": policy.version, "content": policy.text}],
            ["content_hash"],
        )
        > 0
    )


def active_hash(conn: Connection) -> str | None:
    return conn.execute(
        select(audit_log.c.object_id).where(audit_log.c.action == ACTIVATE).order_by(audit_log.c.id.desc()).limit(1)
    ).scalar()


def active_policy(conn: Connection) -> Policy | None:
    """The policy in force (last activated), re-validated from its recorded text; None before the first one."""
    h = active_hash(conn)
    if h is None:
        return None
    row = conn.execute(select(policy_versions).where(policy_versions.c.content_hash == h)).one()
    policy = parse_policy(row.content, source=f"policy_versions[{h[:12]}]")
    if policy.content_hash != h:
        # The stored text no longer hashes to its key: someone edited the table. Refuse to decide with it.
        raise ConfigError(f"recorded policy {h[:12]} does not match its content hash (edited?)")
    return policy


def activate(conn: Connection, policy: Policy, *, actor: str = "system") -> bool:
    """Record and make ``policy`` the one in force; True if that changed the active policy."""
    record(conn, policy)
    if active_hash(conn) == policy.content_hash:
        return False
    audit.append(
        conn,
        actor=actor,
        action=ACTIVATE,
        object_type="policy",
        object_id=policy.content_hash,
        details={"version": policy.version, "source": policy.source},
    )
    return True


@dataclass(frozen=True, slots=True)
class Resolution:
    policy: Policy
    #: The validation error of the file, when the file was rejected and the active policy was used instead.
    rejected: str | None = None


def resolve_for_run(
    conn: Connection, path: str | os.PathLike[str] | None = None, *, actor: str = "system"
) -> Resolution:
    """Load the policy file and activate it; if it is invalid, keep the active policy and record the rejection.

    Raises :class:`ConfigError` only when the file is invalid and no policy was ever activated.
    """
    try:
        policy = load_policy(path)
    except ConfigError as exc:
        audit.append(
            conn, actor=actor, action=REJECT, object_type="policy", object_id=None, details={"error": str(exc)}
        )
        previous = active_policy(conn)
        if previous is None:
            raise
        return Resolution(previous, rejected=str(exc))
    activate(conn, policy, actor=actor)
    return Resolution(policy)
