"""Source connectors: files (CSV, XLSX, Parquet), SQL databases and JSON HTTP APIs behind one ``Protocol``.

A source yields :class:`RawChunk` objects: the records as the source printed them (string columns under the
*source's* column names), each with its source row number, so that any later error can name source, file, row and
field. Typing, mapping and validation happen once, vectorised, in :mod:`writeoffs.ingest.validate`, whatever the
source kind. Structural problems that make a whole file unreadable (missing file, empty file, duplicate headers,
wrong encoding, HTTP failure, database down) raise :class:`~writeoffs.errors.InputError` here; malformed single
records (wrong field count, truncated last line) are reported as :class:`BadRecord` so they can be quarantined.

The domain never imports Airflow: SQL sources take a SQLAlchemy URL and HTTP sources a base URL plus auth; the DAG
resolves both from Airflow Connections.

Submodules:

- :mod:`.base` — :class:`RawChunk`, :class:`BadRecord`, :class:`Artifact`, the :class:`Source` protocol and the
  printing of typed values as export text (:func:`~.base._text`).
- :mod:`.files` — :class:`FileSource`: CSV, XLSX and Parquet exports in a directory.
- :mod:`.sql` — :class:`SqlSource`: a parameterised query streamed from any SQLAlchemy database.
- :mod:`.api` — :class:`HttpSource` (with :class:`HttpAuth`, :class:`HttpOptions`): a paginated JSON API.
- :mod:`.build` — :func:`build_source`: the connector for a configured source.
"""

from writeoffs.ingest.sources.api import MAX_PAGES, RETRY_STATUSES, HttpAuth, HttpOptions, HttpSource
from writeoffs.ingest.sources.base import Artifact, BadRecord, RawChunk, Source, _text
from writeoffs.ingest.sources.build import build_source
from writeoffs.ingest.sources.files import FileSource
from writeoffs.ingest.sources.sql import SqlSource

__all__ = [
    "MAX_PAGES",
    "RETRY_STATUSES",
    "Artifact",
    "BadRecord",
    "FileSource",
    "HttpAuth",
    "HttpOptions",
    "HttpSource",
    "RawChunk",
    "Source",
    "SqlSource",
    "_text",
    "build_source",
]
