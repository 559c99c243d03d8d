"""The runtime role's privileges (writeoffs.db.roles) are a decision per table, and the books stay append-only."""

from __future__ import annotations

import pytest

from writeoffs.db import roles


def test_every_table_has_a_runtime_privilege_decision():
    tables = set(roles.ledger_tables())
    classified = set(roles.RUNTIME_UPDATE) | roles.RUNTIME_DELETE | roles.APPEND_ONLY | roles.INSERT_ONLY
    assert tables == classified, {"unclassified": tables - classified, "unknown": classified - tables}


def test_the_books_and_the_audit_log_are_never_updated_or_deleted():
    books = {"journal_lines", "audit_log"}
    assert books <= roles.APPEND_ONLY
    assert not books & (set(roles.RUNTIME_UPDATE) | roles.RUNTIME_DELETE | roles.INSERT_ONLY)
    statements = roles.grant_statements("ledger", "app")
    assert not [s for s in statements if any(b in s for b in books) and ("UPDATE" in s or "DELETE" in s)]
    assert 'GRANT UPDATE (status, posted_at) ON "ledger".journal_entries TO app' in statements
    grants = [s.split(" ON ")[0] for s in statements if s.startswith("GRANT")]
    assert not [g for g in grants if "TRUNCATE" in g or "TRIGGER" in g or "ALL" in g or "CREATE" in g]


def test_a_new_table_without_a_decision_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(roles, "ledger_tables", lambda: ["audit_log", "shiny_new_table"])
    with pytest.raises(roles.RoleError, match="without a runtime privilege decision: shiny_new_table"):
        roles.grant_statements("ledger", "app")


@pytest.mark.parametrize("name", ["App", "app; DROP TABLE x", "", "a" * 64])
def test_role_names_are_plain_identifiers(name: str):
    with pytest.raises(roles.RoleError, match="role name"):
        roles.grant_statements("ledger", name)
