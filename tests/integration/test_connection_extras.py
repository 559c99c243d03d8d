"""Airflow connections → the ledger and the SQL/HTTP sources, with the connection's extras honoured (issue 17).

Before: the URL came from ``Connection.get_uri()``, which puts *all* extras into one ``__extra__`` JSON query
parameter as soon as one of them is not a string — ``{"connect_timeout": 10}`` gave
``postgres://…?__extra__=%7B…%7D`` and psycopg refused the connection — and the HTTP source ignored every extra
but ``headers`` (no proxy, no TLS verification setting, no timeout).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from writeoffs.errors import ConfigError

pytestmark = [pytest.mark.postgres]

CONN_ID = "writeoff_ledger"


def pg_conn(**extra: Any) -> str:
    """``AIRFLOW_CONN_*`` JSON of a postgres connection to the test database (trust auth on 127.0.0.1)."""
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "postgres",
            "schema": "test",
            "extra": extra,
        }
    )


@pytest.fixture(autouse=True)
def _no_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CONN_WRITEOFF_LEDGER", "AIRFLOW_CONN_WRITEOFF_AUDIT_KEY", "AIRFLOW_CONN_ERP_DB"):
        monkeypatch.delenv(name, raising=False)


def _libpq_params(engine) -> dict[str, str]:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
        return dict(conn.connection.dbapi_connection.info.get_parameters())


def test_ledger_connection_with_non_string_extras_gives_a_working_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from writeoffs_airflow.ledger import ledger_engine

    monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", pg_conn(connect_timeout=10, sslmode="prefer"))
    engine = ledger_engine()
    try:
        params = _libpq_params(engine)
    finally:
        engine.dispose()
    assert params["connect_timeout"] == "10"
    assert params.get("sslmode", "prefer") == "prefer"
    assert "__extra__" not in engine.url.render_as_string()


def test_a_tls_requirement_in_the_extras_is_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sslmode=require`` against the local server (no TLS) must refuse to connect, not silently go plain text."""
    from sqlalchemy.exc import OperationalError

    from writeoffs_airflow.ledger import ledger_engine

    monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", pg_conn(sslmode="require", connect_timeout=5))
    engine = ledger_engine()
    try:
        with pytest.raises(OperationalError, match="SSL"):
            _libpq_params(engine)
    finally:
        engine.dispose()


def test_booleans_and_provider_only_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq wants 1/0 for switches; the provider's own keys (``cursor``, ``sqlalchemy_query``…) are not libpq
    parameters and must not reach it; ``sqlalchemy_query`` adds its entries, as PostgresHook does."""
    from writeoffs_airflow.connections import sqlalchemy_url
    from writeoffs_airflow.ledger import ledger_engine

    extra = {
        "keepalives": True,
        "keepalives_idle": 30,
        "cursor": "dictcursor",
        "sqlalchemy_query": {"application_name": "writeoffs"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", pg_conn(**extra))
    engine = ledger_engine()
    try:
        params = _libpq_params(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SHOW application_name")).scalar() == "writeoffs"
    finally:
        engine.dispose()
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "30"
    from airflow.sdk import Connection

    url = sqlalchemy_url(Connection.get(CONN_ID))
    assert "cursor" not in url and url.startswith("postgresql+psycopg://postgres@127.0.0.1:5432/test?")


@pytest.mark.parametrize("bad", [{"options": {"a": 1}}, {"sslmode": ["require"]}, {"sqlalchemy_query": "x=1"}])
def test_extras_that_are_not_scalars_are_refused(monkeypatch: pytest.MonkeyPatch, bad: dict) -> None:
    from writeoffs_airflow.ledger import ledger_url

    monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", pg_conn(**bad))
    with pytest.raises(ConfigError, match=CONN_ID):
        ledger_url()


def test_an_extra_that_is_not_a_json_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's own parser logs bad JSON and returns {}: the TLS settings in it would be dropped silently."""
    from writeoffs_airflow.ledger import ledger_url

    conn = json.loads(pg_conn())
    for bad in ('{"sslmode": "verify-full",}', '["sslmode"]'):
        conn["extra"] = bad
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", json.dumps(conn))
        with pytest.raises(ConfigError, match=CONN_ID):
            ledger_url()


def test_a_password_with_url_characters_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    from writeoffs_airflow.ledger import ledger_url

    conn = json.loads(pg_conn(connect_timeout=3))
    conn["password"] = "p@ss:w/rd?&#%"
    monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", json.dumps(conn))
    url = make_url(ledger_url())
    assert url.password == "p@ss:w/rd?&#%" and url.query == {"connect_timeout": "3"}


def test_the_sqlalchemy_url_extra_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from writeoffs_airflow.ledger import ledger_url

    monkeypatch.setenv(
        "AIRFLOW_CONN_WRITEOFF_LEDGER", pg_conn(sqlalchemy_url="sqlite:////tmp/x.db", connect_timeout=10)
    )
    assert ledger_url() == "sqlite:////tmp/x.db"


# --- the SQL and HTTP sources -----------------------------------------------------------------------------------


def _source_config(kind: str, **over: Any):
    from writeoffs.ingest.config import SourceConfig

    body: dict[str, Any] = {
        "name": "erp",
        "kind": kind,
        "conn_id": "erp_db",
        "datasets": {"invoices": {"query": "SELECT 1", "endpoint": "invoices"}},
    }
    body.update(over)
    return SourceConfig.model_validate(body)


def test_sql_source_connection_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import create_engine

    from writeoffs.db.engine import normalise_url
    from writeoffs_airflow.sources import source_for

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", pg_conn(connect_timeout=10, sslmode="prefer"))
    source = source_for(_source_config("sql"))
    engine = create_engine(normalise_url(source.url))
    try:
        assert _libpq_params(engine)["connect_timeout"] == "10"
    finally:
        engine.dispose()


class _Recorder:
    """A local HTTP server answering every GET with an empty page: stands in for the API or, given an absolute URL
    in the request line, for a forward proxy."""

    def __init__(self, delay: float = 0.0) -> None:
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rec.paths.append(self.path)
                rec.headers.append(dict(self.headers.items()))
                time.sleep(delay)
                body = b'{"data": [], "next": null}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    with _Recorder() as r:
        yield r


def _http_conn(**extra: Any) -> str:
    # the API host does not exist: a request can only succeed through the proxy
    return json.dumps({"conn_type": "http", "host": "erp.invalid", "schema": "http", "extra": extra})


def test_http_source_goes_through_the_proxy_with_headers(monkeypatch: pytest.MonkeyPatch, recorder) -> None:
    from datetime import date

    from writeoffs_airflow.sources import source_for

    proxy = f"http://127.0.0.1:{recorder.port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ERP_DB",
        _http_conn(proxies={"http": proxy}, headers={"Authorization": "Bearer t0k"}, timeout=5, verify=False),
    )
    source = source_for(_source_config("http", retries=0))
    list(source.read("invoices", date(2026, 11, 24)))
    assert recorder.paths == ["http://erp.invalid/invoices"]  # absolute URL: it was asked as a proxy
    assert recorder.headers[0]["Authorization"] == "Bearer t0k"


def test_http_source_timeout_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import date

    from writeoffs.errors import WriteoffError
    from writeoffs_airflow.sources import source_for

    with _Recorder(delay=3.0) as slow:
        conn = {"conn_type": "http", "host": "127.0.0.1", "port": slow.port, "schema": "http", "extra": {"timeout": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", json.dumps(conn))
        source = source_for(_source_config("http", retries=0, timeout_s=30))
        started = time.monotonic()
        with pytest.raises(WriteoffError, match="timed out after 1 s"):
            list(source.read("invoices", date(2026, 11, 24)))
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "extra",
    [{"verify": "yes please"}, {"proxies": "http://p:1"}, {"timeout": "soon"}, {"timeout": 0}, {"headers": ["x"]}],
)
def test_http_extras_of_the_wrong_shape_are_refused(monkeypatch: pytest.MonkeyPatch, extra: dict) -> None:
    from writeoffs_airflow.sources import source_for

    monkeypatch.setenv("AIRFLOW_CONN_ERP_DB", _http_conn(**extra))
    with pytest.raises(ConfigError, match="erp_db"):
        source_for(_source_config("http"))


def test_a_uri_connection_keeps_its_search_path_option(monkeypatch: pytest.MonkeyPatch, pg_schema: str) -> None:
    """The URI form (compose, ``make up``): Airflow parses the query into extras; the ``options`` extra (a search
    path with a space, escaped for libpq) goes back to libpq unchanged."""
    from writeoffs.db.engine import schema_url
    from writeoffs_airflow.ledger import ledger_engine

    path = f'"$user", {pg_schema}'
    url = schema_url("postgresql://postgres@127.0.0.1:5432/test?connect_timeout=7", path)
    for scheme in ("postgresql://", "postgresql+psycopg://"):  # conn_type 'postgres' / 'postgresql+psycopg'
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFF_LEDGER", scheme + url.split("://", 1)[1])
        engine = ledger_engine()
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SHOW search_path")).scalar() == path
            assert _libpq_params(engine)["connect_timeout"] == "7"
        finally:
            engine.dispose()
