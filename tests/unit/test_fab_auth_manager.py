"""The production auth manager matches approvers by FAB username, where the stock one compares numeric ids.

On a real Airflow: tests/integration/test_fab_auth.py.
"""

from __future__ import annotations

import pytest
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
from airflow.providers.fab.auth_manager.models import User

from writeoffs_airflow.fab_auth import WriteoffsFabAuthManager


def test_the_assigned_username_may_answer_where_the_stock_manager_compares_the_numeric_id() -> None:
    approver = User(id=7, username="ar_manager", email="ar@example.com")
    assert approver.get_id() == "7"
    assert FabAuthManager().is_authorized_hitl_task(assigned_users={"ar_manager"}, user=approver) is False
    assert WriteoffsFabAuthManager().is_authorized_hitl_task(assigned_users={"ar_manager"}, user=approver) is True


@pytest.mark.parametrize(
    "user",
    [
        User(id=8, username="controller", email="c@example.com"),  # someone else
        User(id=9, username=None, email="ar_manager"),  # no username: the e-mail never stands in for it
        User(id=10, username="AR_MANAGER", email="x@example.com"),  # usernames are compared exactly
        User(id=11, username="", email="y@example.com"),
    ],
)
def test_nobody_else_matches(user: User) -> None:
    assert WriteoffsFabAuthManager().is_authorized_hitl_task(assigned_users={"ar_manager", "7"}, user=user) is False
