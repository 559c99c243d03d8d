"""SQL sources: any database SQLAlchemy can reach, queried with ``:as_of`` and streamed in chunks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date
from typing import Any

from writeoffs.errors import InputError, SourceUnavailable
from writeoffs.ingest.config import SourceConfig
from writeoffs.ingest.sources.base import Artifact, RawChunk, _check_header, _strings_table, _text


class SqlSource:
    """Any database SQLAlchemy can reach; the query is parameterised (``:as_of``) and streamed in chunks."""

    def __init__(self, config: SourceConfig, url: str) -> None:
        self.config = config
        self.name = config.name
        self.url = url
        self._artifacts: list[Artifact] = []

    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts)

    def control(self, as_of: date) -> dict[str, Any] | None:
        return None

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        import pyarrow as pa
        from sqlalchemy import bindparam, create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

        from writeoffs.db.engine import normalise_url

        cfg = self.config
        query = cfg.datasets[dataset].query or ""
        where = f"{dataset} query"
        safe_url = make_url(normalise_url(self.url)).render_as_string(hide_password=True)
        self._artifacts.append(Artifact(dataset, where, hashlib.sha256(query.encode()).hexdigest()))
        stmt = text(query)
        if ":as_of" in query:
            stmt = stmt.bindparams(bindparam("as_of", value=as_of))
        engine = create_engine(normalise_url(self.url), pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=cfg.chunk_rows).execute(stmt)
                columns = list(result.keys())
                _check_header(cfg, where, columns)
                start = 1
                for part in result.partitions(cfg.chunk_rows):
                    rows = [[_text(v, cfg.date_format, cfg.negative_style) for v in r] for r in part]
                    n = len(rows)
                    yield RawChunk(
                        dataset, where, _strings_table(columns, rows), pa.array(range(start, start + n), pa.int64())
                    )
                    start += n
                if start == 1:
                    yield RawChunk(dataset, where, _strings_table(columns, []), pa.array([], pa.int64()))
        except (DBAPIError, SQLAlchemyError) as exc:
            first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            # Cannot connect / connection lost: the database may come back, so the task keeps its retries.
            error = SourceUnavailable if isinstance(exc, (OperationalError, InterfaceError)) else InputError
            raise error(f"source database {safe_url} failed: {first}", source=cfg.name, file=where) from None
        finally:
            engine.dispose()
