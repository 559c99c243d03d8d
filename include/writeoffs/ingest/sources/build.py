"""The connector for a configured source, by its kind."""

from __future__ import annotations

from writeoffs.errors import InputError
from writeoffs.ingest.config import SourceConfig, expand
from writeoffs.ingest.sources.api import HttpAuth, HttpOptions, HttpSource
from writeoffs.ingest.sources.base import Source
from writeoffs.ingest.sources.files import FileSource
from writeoffs.ingest.sources.sql import SqlSource


def build_source(
    config: SourceConfig,
    *,
    url: str | None = None,
    auth: HttpAuth | None = None,
    location: str | None = None,
    http: HttpOptions | None = None,
) -> Source:
    """The connector for a configured source. ``url``/``auth`` come from the Airflow connection in the DAG."""
    if config.kind == "file":
        return FileSource(config, location=location)
    if config.kind == "sql":
        target = url or config.url
        if not target:
            raise InputError("no database URL (set conn_id in the DAG or url in the config)", source=config.name)
        return SqlSource(config, expand(target))
    target = url or config.url
    if not target:
        raise InputError("no base URL (set conn_id in the DAG or url in the config)", source=config.name)
    return HttpSource(config, expand(target), auth, http)
