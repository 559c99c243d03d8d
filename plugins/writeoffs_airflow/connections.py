"""Airflow connections → what the ledger and the sources connect with, the connection's extras honoured.

One home for "connection → SQLAlchemy URL" (the ledger in tasks and in the workspace, the SQL sources) and for
"connection extras → HTTP options" (the HTTP sources).

SQL (:func:`sqlalchemy_url`): the extra ``sqlalchemy_url``, if set, is used as is. A ``postgres`` connection is
built with ``sqlalchemy.engine.URL.create`` (user and password escaped by SQLAlchemy): every extra the Postgres
provider itself would hand to the driver (all but ``PostgresHook.ignored_extra_options``) becomes a libpq parameter
in the URL's query — ``connect_timeout: 10``, ``sslmode``, ``sslrootcert``, ``keepalives: true`` (as ``1``),
``options`` … — and the provider's ``sqlalchemy_query`` adds its entries; ``sqlalchemy_scheme`` (or a URI scheme
such as ``postgresql+psycopg://``) picks the driver (default ``postgresql+psycopg``). Airflow's own
``Connection.get_uri()`` is not used for PostgreSQL: with one
non-string extra it packs them all into a single ``__extra__`` parameter the driver refuses. Other connection types
keep Airflow's URI and must have string extras. An extra that is a list or a mapping is refused (ConfigError naming
the connection and the key), never dropped: a dropped ``sslmode`` would mean plain text.

HTTP (:func:`http_options`): ``timeout`` (seconds, > 0), ``verify`` (true/false, or a CA bundle path), ``proxies``
(``{"http": ..., "https": ...}``; ``proxy`` is accepted as in the HTTP provider), ``cert`` (client certificate
path, or ``[cert, key]``), ``headers`` (a mapping), as the HTTP provider names them.
"""

from __future__ import annotations

import json
from typing import Any

from writeoffs.errors import ConfigError

#: Extras of a postgres connection that are ours, not libpq's.
OWN_EXTRAS = frozenset({"sqlalchemy_url"})
DEFAULT_PG_DRIVER = "postgresql+psycopg"


def extras(conn: Any) -> dict[str, Any]:
    """The connection's extra as a dict (SDK and core connections alike); anything but a JSON object is refused
    (Airflow's ``extra_dejson`` logs bad JSON and returns ``{}``, which would drop e.g. ``sslmode`` silently)."""
    text = conn.extra or ""
    try:
        raw = json.loads(text) if text.strip() else {}
    except ValueError:
        raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra must be a JSON object")
    if hasattr(conn, "extra_dejson"):
        conn.extra_dejson  # noqa: B018 - Airflow masks the extra's sensitive values in logs when it parses them
    return raw


def _scalar(conn: Any, key: str, value: Any) -> str:
    if isinstance(value, bool):  # libpq switches are 1/0 (before int: bool is an int)
        return "1" if value else "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra {key!r} must be a string, number or boolean")


def sqlalchemy_url(conn: Any) -> str:
    """The SQLAlchemy URL (password included: for ``make_engine``/``create_engine``, never for logs)."""
    extra = extras(conn)
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    conn_type = str(conn.conn_type or "").lower()
    if conn_type not in ("postgres", "postgresql") and not conn_type.startswith("postgresql+"):
        for key, value in extra.items():
            if not isinstance(value, str):
                raise ConfigError(
                    f"Airflow connection {conn.conn_id!r}: extra {key!r} is not a string; give this connection "
                    "its full URL in the extra 'sqlalchemy_url' instead"
                )
        return str(conn.get_uri())

    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from sqlalchemy.engine import URL

    query: dict[str, str] = {}
    for key, value in extra.items():
        if key in PostgresHook.ignored_extra_options or key in OWN_EXTRAS or value is None:
            continue
        query[key] = _scalar(conn, key, value)
    sa_query = extra.get("sqlalchemy_query") or {}
    if not isinstance(sa_query, dict):
        raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra 'sqlalchemy_query' must be a JSON object")
    query.update({str(k): _scalar(conn, f"sqlalchemy_query.{k}", v) for k, v in sa_query.items()})
    url = URL.create(
        drivername=str(extra.get("sqlalchemy_scheme") or (conn_type if "+" in conn_type else DEFAULT_PG_DRIVER)),
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=int(conn.port) if conn.port else None,
        database=conn.schema or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def _flag(conn: Any, key: str, value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if key == "verify" and isinstance(value, str) and value.strip().startswith("/"):
        return value.strip()  # a CA bundle
    raise ConfigError(
        f"Airflow connection {conn.conn_id!r}: extra {key!r} must be true, false"
        + (" or the absolute path of a CA bundle" if key == "verify" else "")
    )


def http_options(conn: Any) -> dict[str, Any]:
    """Keyword arguments for ``writeoffs.ingest.sources.HttpOptions`` from the connection's extras."""
    extra = extras(conn)
    out: dict[str, Any] = {}
    timeout = extra.get("timeout")
    if timeout is not None:
        try:
            seconds = float(timeout)
        except (TypeError, ValueError):
            seconds = 0.0
        if isinstance(timeout, bool) or not seconds > 0 or seconds != seconds:
            raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra 'timeout' must be a number of seconds > 0")
        out["timeout_s"] = seconds
    verify = extra.get("verify", extra.get("verify_ssl"))
    if verify is not None:
        out["verify"] = _flag(conn, "verify", verify)
    proxies = extra.get("proxies", extra.get("proxy"))
    if proxies is not None:
        if not isinstance(proxies, dict) or not all(isinstance(v, str) for v in proxies.values()):
            raise ConfigError(
                f"Airflow connection {conn.conn_id!r}: extra 'proxies' must map schemes to proxy URLs, "
                'e.g. {"https": "http://proxy:3128"}'
            )
        out["proxies"] = {str(k): v for k, v in proxies.items()}
    cert = extra.get("cert")
    if cert is not None:
        if isinstance(cert, str):
            out["cert"] = cert
        elif isinstance(cert, list) and len(cert) == 2 and all(isinstance(c, str) for c in cert):
            out["cert"] = (cert[0], cert[1])
        else:
            raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra 'cert' must be a path or [cert, key]")
    headers = extra.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            raise ConfigError(f"Airflow connection {conn.conn_id!r}: extra 'headers' must be a JSON object")
        out["headers"] = {str(k): _scalar(conn, f"headers.{k}", v) for k, v in headers.items()}
    return out
