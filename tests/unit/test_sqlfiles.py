"""``db.sqlfiles``: a statement's per-database variant is chosen through the dialect adapter, a missing file is named,
and a ``:parameter`` inside a comment (which ``text()`` would bind too) is refused when the file is read."""

from __future__ import annotations

import sys

import pytest

from writeoffs.db import dialect, sqlfiles


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "sqlfiles_probe"
    (root / "sql").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sql" / "both.sql").write_text("SELECT 1 WHERE :b = :b\n")
    (root / "sql" / "split.postgresql.sql").write_text("SELECT a IS DISTINCT FROM :x\n")
    (root / "sql" / "split.sqlite.sql").write_text("SELECT a IS NOT :x\n")
    (root / "sql" / "noted.sql").write_text("-- keyed by :batch_id\nSELECT 1\n")
    (root / "sql" / "cast.sql").write_text("SELECT CAST(:d AS TEXT)::date -- a cast, not a parameter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "sqlfiles_probe"
    sqlfiles._read.cache_clear()
    sys.modules.pop("sqlfiles_probe", None)


def test_the_variant_of_the_database_is_taken_else_the_common_file(package):
    assert str(sqlfiles.sql(package, "split", dialect.POSTGRESQL)).startswith("SELECT a IS DISTINCT FROM")
    assert str(sqlfiles.sql(package, "split", dialect.SQLITE)).startswith("SELECT a IS NOT :x")
    assert set(sqlfiles.sql(package, "both", dialect.SQLITE).compile().params) == {"b"}
    assert str(sqlfiles.sql(package, "cast")).startswith("SELECT CAST(")


def test_a_missing_statement_is_named(package):
    with pytest.raises(FileNotFoundError, match=r"split\.sql under sqlfiles_probe/sql/"):
        sqlfiles.sql(package, "split")  # no common file, and no database named


def test_a_parameter_in_a_comment_is_refused(package):
    with pytest.raises(ValueError, match=r"noted\.sql: a comment names a :parameter"):
        sqlfiles.sql(package, "noted")
