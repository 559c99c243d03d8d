"""Resolve a configured source's connection (Airflow Connections) into what the domain connectors take.

SQL sources: the connection's extra ``{"sqlalchemy_url": "..."}`` if set, else a URL built from the connection with
its extras as driver parameters (``writeoffs_airflow.connections.sqlalchemy_url``). HTTP sources: the base URL is
built from the connection (``schema://host:port/``, or ``extra.base_url``); login/password become basic auth,
``extra.headers`` (e.g. ``{"Authorization": "Bearer ..."}``) are sent with every request, and ``timeout``, ``verify``,
``proxies`` and ``cert`` set the transport (``writeoffs_airflow.connections.http_options``). A source without a
connection in Airflow falls back to the ``url`` in sources.yaml (the demo defaults). Called inside tasks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from writeoffs.ingest.config import SourceConfig
    from writeoffs.ingest.sources import Source


def _connection(conn_id: str | None):
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    if not conn_id:
        return None
    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def source_for(config: SourceConfig) -> Source:
    from writeoffs.ingest.sources import HttpAuth, HttpOptions, build_source
    from writeoffs_airflow.connections import extras, http_options, sqlalchemy_url

    conn = _connection(config.conn_id) if config.kind in ("sql", "http") else None
    if conn is None:
        return build_source(config)
    if config.kind == "sql":
        return build_source(config, url=sqlalchemy_url(conn))
    extra = extras(conn)
    options = http_options(conn)
    base = extra.get("base_url")
    if not base:
        scheme = conn.schema or "https"
        port = f":{conn.port}" if conn.port else ""
        base = f"{scheme}://{conn.host}{port}/"
    auth = HttpAuth(username=conn.login or None, password=conn.password or None, headers=options.pop("headers", {}))
    return build_source(config, url=str(base), auth=auth, http=HttpOptions(**options))
