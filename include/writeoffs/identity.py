"""Who is acting: taken from authentication, never from input.

In Airflow the actor is the authenticated user (the run's triggering user, the HITL responder) or the DAG itself
(``airflow:<dag_id>``). On the command line it is the operating-system account running the command, recorded as
``os:<account>``: no option, param, file or API field may name a person.
"""

from __future__ import annotations

import getpass


def os_actor() -> str:
    """The OS account running this process, as recorded in the ledger and the audit log."""
    return f"os:{getpass.getuser()}"


def normalized(user: str | None) -> str:
    """The form identities are compared in: ``" CFO "`` and ``"cfo"`` are one person (no case games)."""
    return (user or "").strip().casefold()


def run_actor(dag_run: object, fallback: str) -> str:
    """Who triggered an Airflow run: its authenticated triggering user, else ``fallback`` (the DAG itself, for
    scheduled and asset-triggered runs and ``dag.test()``). Never a param: a name given as input could be anyone's."""
    user = (getattr(dag_run, "triggering_user_name", None) or "").strip()
    return user if user and user != "dag_test" else fallback
