"""The production auth manager: Flask-AppBuilder's (``apache-airflow-providers-fab``), with approvers matched by
username.

Configure ``[core] auth_manager = writeoffs_airflow.fab_auth.WriteoffsFabAuthManager``.

Why not the stock ``FabAuthManager``: the approval requests name their approvers by Airflow username (the tiers of
the policy list usernames, and the ledger records the username of whoever answered), and Airflow's HITL check
compares ``assigned_users`` with the *user id* — for SimpleAuthManager the username, for FAB the numeric primary key
of ``ab_user`` (``User.get_id()`` is ``str(self.id)``). Under the stock FAB auth manager every approver would be
refused with "not a respondent"; a task cannot look the numeric ids up (it has no metadata database), and ids
would also differ between deployments of the same policy. This subclass compares the authenticated user's *name*
(``User.get_name()``: the FAB username) instead. It only ever narrows who may answer to the users the request
names; who is recorded is still the authenticated user, and the ledger checks every answer again
(:mod:`writeoffs_airflow.answer_gate`, :func:`writeoffs.approvals.record_decision`).

Airflow's plugins manager imports every ``.py`` file under the plugins folder in every component; this one imports
Flask-AppBuilder, so ``plugins/.airflowignore`` keeps it out of that scan: it is imported only where it is
configured.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager


def username_of(user: Any) -> str | None:
    """The FAB username of an authenticated user (``get_name()`` falls back to the e-mail when it has none: then
    the user cannot be an assigned approver)."""
    name = getattr(user, "username", None)
    return str(name) if name else None


class WriteoffsFabAuthManager(FabAuthManager):
    def is_authorized_hitl_task(self, *, assigned_users: set[str], user: Any) -> bool:
        name = username_of(user)
        return name is not None and name in assigned_users
