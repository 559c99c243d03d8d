"""The reports store as Airflow's ``ObjectStoragePath``: what the DAG tasks write to and the workspace plugin reads
from (KPI reports and charts, reconciliation reports, candidate lists, Data Docs).

The setting and its checks have one home, :mod:`writeoffs.report_store` (``WRITEOFFS_REPORTS_STORE``; unset =
``$WRITEOFFS_DATA_DIR/reports``). This module only opens it the Airflow way, so a remote store can take its
credentials from an Airflow connection: ``s3://aws_reports@bucket/writeoffs/reports`` uses the connection
``aws_reports`` through the Amazon provider's filesystem (Airflow's own URL form for ``conn_id``).

An fsspec scheme that no installed Airflow provider registers (``memory``, ``gcs`` without the Google provider)
is attached with fsspec's own filesystem, as long as no connection is named: a named connection needs the
provider that knows how to read it, and without one the setting is refused rather than the connection ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from writeoffs import report_store
from writeoffs.errors import ConfigError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def reports_root() -> ObjectStoragePath:
    """The reports root, checked (scheme known and writable, store reachable: :mod:`writeoffs.report_store`)."""
    from airflow.sdk import ObjectStoragePath

    url = report_store.configured()
    local = report_store.local_root(url)
    if local is not None:  # made if missing; a folder that cannot be made (read-only mount) is Unavailable
        return report_store.reachable(lambda: ObjectStoragePath(local.as_uri()), local.as_uri())
    assert url is not None  # local_root is None only for a configured, non-local URL
    scheme = report_store.scheme_of(url)
    conn_id = urlsplit(url).netloc.rpartition("@")[0] or None
    return report_store.reachable(lambda: _open(url, scheme, conn_id))


def _open(url: str, scheme: str, conn_id: str | None) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    _attach(url, scheme, conn_id)
    return ObjectStoragePath(url)


def docs_store() -> ObjectStoragePath | None:
    """Where validation runs publish their Data Docs: the reports store when ``WRITEOFFS_REPORTS_STORE`` is set;
    None otherwise (the sites stay where Great Expectations builds them, the validation config's ``reports_dir``,
    which is where the workspace reads them then)."""
    return reports_root() if report_store.configured() else None


def _attach(url: str, scheme: str, conn_id: str | None) -> None:
    """Make sure Airflow has a filesystem for ``scheme`` (``ObjectStoragePath.open`` and ``stat`` ask Airflow's
    registry, not fsspec's). Airflow keeps one such filesystem per scheme: one store per process, which is what
    the setting gives."""
    from airflow.sdk.io import attach, has_fs

    if has_fs(scheme):
        return
    if conn_id:
        raise ConfigError(
            f"{report_store.ENV}: {scheme}:// with connection {conn_id!r} needs the Airflow provider that registers "
            f"{scheme}:// (none installed); drop the connection to use fsspec's own credentials"
        )
    from fsspec.core import url_to_fs

    attach(protocol=scheme, fs=url_to_fs(url)[0])  # host and port of the URL (ftp, sftp) reach the filesystem
