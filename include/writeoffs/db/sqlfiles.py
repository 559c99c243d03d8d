"""SQL kept in ``.sql`` files with named parameters, beside the module that runs it.

A statement too long or too tuned to read well as SQLAlchemy Core lives in ``<package>/sql/<name>.sql``; where its
spelling differs per database, in ``<name>.postgresql.sql`` and ``<name>.sqlite.sql`` (chosen through
:mod:`writeoffs.db.dialect`). Values travel only as named bind parameters (``:batch_id``); a list is bound with
``bindparam(name, expanding=True)`` by the caller. Nothing is formatted into the text. Files are read once per
process.

A ``:word`` in a ``--`` comment is refused when the file is read: ``text()`` would take it for a bind parameter too
(SQLite then fails with "Incorrect number of bindings supplied", PostgreSQL not at all).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from sqlalchemy import TextClause, text

from writeoffs.db.dialect import Dialect

_COMMENTED_PARAM = re.compile(r"--[^\n]*?(?<![:\w]):[A-Za-z_]")


@cache
def _read(package: str, filename: str) -> str | None:
    path = resources.files(package).joinpath("sql", filename)
    if not path.is_file():
        return None
    body = path.read_text(encoding="utf-8")
    if _COMMENTED_PARAM.search(body):
        raise ValueError(f"{package.replace('.', '/')}/sql/{filename}: a comment names a :parameter (drop the colon)")
    return body


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
