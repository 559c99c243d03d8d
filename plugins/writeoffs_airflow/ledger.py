"""Resolve the ledger database for a task: Airflow connection ``writeoff_ledger``, else env, else SQLite.

A PostgreSQL connection (``AIRFLOW_CONN_WRITEOFF_LEDGER='postgresql://user:pw@host:5432/ledger'``, or the JSON form)
is turned into a URL with its extras as libpq parameters (``connect_timeout``, ``sslmode``, ...:
``writeoffs_airflow.connections.sqlalchemy_url``); any connection may instead carry the full SQLAlchemy URL in its
extra as ``{"sqlalchemy_url": "..."}``.

The audit chain's key comes from the connection ``writeoff_audit_key`` (its password: the key as hex), so that it
can live in a secrets backend; without that connection the domain falls back to ``WRITEOFFS_AUDIT_KEY_FILE`` /
``WRITEOFFS_AUDIT_KEY`` (``writeoffs.audit_anchor``), and without any key audit writes refuse.
Called inside tasks only (it touches the secrets backend / API), never at DAG parse time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

LEDGER_CONN_ID = os.environ.get("WRITEOFFS_LEDGER_CONN_ID", "writeoff_ledger")
AUDIT_KEY_CONN_ID = os.environ.get("WRITEOFFS_AUDIT_KEY_CONN_ID", "writeoff_audit_key")


def ledger_url() -> str | None:
    """The configured ledger URL, or None to let the domain default apply (env var or SQLite file)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(LEDGER_CONN_ID)
    except AirflowNotFoundException:
        return None
    from writeoffs_airflow.connections import sqlalchemy_url

    return sqlalchemy_url(conn)


def audit_key() -> bytes | None:
    """The audit key from the Airflow connection ``writeoff_audit_key``, or None to let the environment apply."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from writeoffs.audit_anchor import parse_key

    try:
        conn = Connection.get(AUDIT_KEY_CONN_ID)
    except AirflowNotFoundException:
        return None
    return parse_key(conn.password or "", f"Airflow connection {AUDIT_KEY_CONN_ID}")


def ledger_engine() -> Engine:
    from writeoffs.db.engine import make_engine

    return make_engine(ledger_url(), audit_key=audit_key())
