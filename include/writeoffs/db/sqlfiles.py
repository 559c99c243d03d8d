"""SQL kept in ``.sql`` files with named parameters, beside the module that runs it.

A statement too long or too tuned to read well as SQLAlchemy Core lives in ``<package>/sql/<name>.sql``; where its
spelling differs per database, in ``<name>.postgresql.sql`` and ``<name>.sqlite.sql`` (chosen through
:mod:`writeoffs.db.dialect`). Values travel only as named bind parameters (``:batch_id``); a list is bound with
``bindparam(name, expanding=True)`` by the caller. Nothing is formatted into the text. Files are read once per
process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from sqlalchemy import TextClause, text

from writeoffs.db.dialect import Dialect


@cache
def _read(package: str, filename: str) -> str | None:
    path = resources.files(package).joinpath("sql", filename)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def sql(package: str, name: str, dialect: Dialect | None = None) -> TextClause:
    """The statement ``name`` of ``package`` (its ``__package__`` or ``__name__``) as a ``text()`` clause.

    With ``dialect``, ``<name>.<dialect>.sql`` is taken when it exists, else ``<name>.sql``. A missing file is an
    error naming what was looked for.
    """
    tried = ([dialect.sql_file(name)] if dialect is not None else []) + [f"{name}.sql"]
    for filename in tried:
        body = _read(package, filename)
        if body is not None:
            return text(body)
    raise FileNotFoundError(f"no SQL file {' or '.join(tried)} under {package.replace('.', '/')}/sql/")
