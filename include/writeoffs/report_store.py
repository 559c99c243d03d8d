"""Where the files people read are kept: KPI reports and charts, reconciliation reports, candidate lists and the
validation runs' Data Docs. One setting, ``WRITEOFFS_REPORTS_STORE``, names the root of the reports store.

* Unset: ``$WRITEOFFS_DATA_DIR/reports`` on the local disk, as before (``make up``, the tests, one host).
* A ``file://`` URL or a plain path: that folder (a shared mount such as NFS or EFS).
* Any other fsspec URL (``s3://bucket/writeoffs/reports``, ``gs://...``, ``memory://...`` in tests): the object
  store. In Airflow, tasks and the workspace plugin open it as Airflow's ``ObjectStoragePath``
  (:mod:`writeoffs_airflow.storage`), so ``s3://<conn_id>@bucket/...`` takes its credentials from an Airflow
  connection.

Why the store: with several Celery workers a report written on one worker's disk is missing on the others and on
the api-server that serves it. With a store every worker writes to, and the api-server reads from, the same place.

Layering: this package does not import Airflow (the CLI and the tests use it without one), so this module speaks
fsspec/pathlib only. The writers here accept any path object with the pathlib API (``/``, ``mkdir``,
``write_text``, ``open``, ``replace``, ``iterdir``, ``glob``): a :class:`pathlib.Path`, a ``upath.UPath`` or
Airflow's ``ObjectStoragePath`` (a ``UPath``). :func:`reports_root` gives a ``Path`` or a ``UPath``, without Airflow
connections (fsspec's own credentials: environment, instance role); the Airflow side gives an ``ObjectStoragePath``.

Fail closed: an unknown scheme, a scheme whose fsspec package is missing, a read-only scheme (``http``, ``zip``...)
is a :class:`~writeoffs.errors.ConfigError`; a store that cannot be reached is
:class:`~writeoffs.errors.Unavailable` (retried); both say so in one line. Nothing falls back to the local disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from writeoffs.errors import ConfigError, Unavailable, shorten

ENV = "WRITEOFFS_REPORTS_STORE"

#: A path with the pathlib API in the reports store: ``pathlib.Path``, ``upath.UPath`` or Airflow's
#: ``ObjectStoragePath``. ``Any`` because the three share no base class this package may import.
StorePath: TypeAlias = Any

#: fsspec protocols that exist but cannot hold files we write (or only read an archive): refused, not tried.
READ_ONLY = frozenset({"http", "https", "data", "zip", "tar", "git", "github", "gist", "reference", "libarchive"})
#: Our names for the local disk.
LOCAL = frozenset({"", "file", "local"})


def configured() -> str | None:
    """The store URL when one is set (stripped), else None: the local default applies."""
    value = os.environ.get(ENV, "").strip()
    return value or None


def scheme_of(url: str) -> str:
    """The URL's scheme (``""`` for a plain path), checked: fsspec knows it, its package is installed, it can be
    written. Anything else is a :class:`ConfigError` naming the setting."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if ":" in urlsplit(url).netloc.rpartition("@")[0]:
        # user:password@ : a secret in an environment variable that logs and task results would repeat.
        raise ConfigError(
            f"{ENV}: a password in the store URL is refused; name an Airflow connection instead "
            f"({scheme}://<conn_id>@<bucket>/...) or use the store's own credential chain"
        )
    if scheme in LOCAL:
        return scheme
    if scheme in READ_ONLY:
        raise ConfigError(f"{ENV}: {scheme}:// cannot hold reports (read-only); use a writable store such as s3://")
    from fsspec.registry import get_filesystem_class

    try:
        get_filesystem_class(scheme)
    except ImportError as exc:
        why = shorten(str(exc), 120)
        raise ConfigError(f"{ENV}: {scheme}:// needs a package that is not installed ({why})") from exc
    except ValueError:
        raise ConfigError(f"{ENV}: unknown storage scheme {scheme!r} in {shorten(url, 120)!r}") from None
    return scheme


def local_root(url: str | None) -> Path | None:
    """The local folder the store is, or None when it is not on the local disk."""
    if url is None:
        from writeoffs.db.engine import data_dir

        return data_dir() / "reports"
    scheme = scheme_of(url)
    if scheme not in LOCAL:
        return None
    if scheme:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"{ENV}: a file:// URL names no host ({shorten(url, 120)!r})")
        return Path(parts.path).resolve()
    return Path(url).resolve()


def reports_root() -> Any:
    """The root of the reports store without Airflow: a :class:`Path` for the local disk, else a ``UPath``.
    Checked once here (scheme, reachable), so a task fails at the start rather than after its work."""
    url = configured()
    local = local_root(url)
    if local is not None:
        return local
    if "@" in urlsplit(url).netloc:
        # s3://conn_id@bucket: an Airflow connection, which only Airflow can read. fsspec would take the name for
        # part of the bucket or a user and write somewhere else.
        raise ConfigError(
            f"{ENV}: the store URL names an Airflow connection, which only tasks and the api-server can use; "
            "run this inside Airflow or set a URL without one (the store's own credential chain)"
        )
    from upath import UPath

    return reachable(lambda: UPath(url), url)


def reachable(open_root: Any, url: str | None = None) -> Any:
    """The root ``open_root()`` gives, once it answers (its folder made if the store has folders). A failure to
    connect or to answer is :class:`Unavailable` in one line naming the store (never a connection id or password
    from the URL); a :class:`ConfigError` is passed on as it is."""
    try:
        root = open_root()
        root.mkdir(parents=True, exist_ok=True)
        root.exists()
    except ConfigError:
        raise
    except Exception as exc:  # any driver's error (botocore, gcsfs, OSError): the store did not answer
        why = shorten(f"{type(exc).__name__}: {exc}", 160)
        raise Unavailable(f"reports store {_safe(url or configured() or '')} cannot be reached: {why}") from exc
    return root


def _safe(url: str) -> str:
    # Scheme, host and path only: a connection id or password in the URL's user part stays out of messages.
    parts = urlsplit(url)
    if "@" in parts.netloc:
        url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return shorten(url, 160)


def location(path: Any) -> str:
    """Where a stored file is, for logs, task results and the ledger's run records: the plain path on the local
    disk (as before the store), else the store URL (without a connection id in its user part)."""
    if isinstance(path, Path):
        return str(path)
    if is_local(path):
        return str(path.path)
    text = str(path)
    parts = urlsplit(text)
    if parts.scheme and "@" in parts.netloc:  # s3://conn_id@bucket/...: the connection id is not a location
        text = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return text


def reports_under(base_dir: Any = None, reports: Any = None) -> Any:
    """The reports root a writer uses: ``reports`` when given (the Airflow side passes its ``ObjectStoragePath``),
    else ``<base_dir>/reports`` (a data folder, as the tests and older callers pass), else :func:`reports_root`."""
    if reports is not None:
        return reports
    if base_dir is not None:
        return base_dir / "reports"
    return reports_root()


def is_local(path: Any) -> bool:
    """True for a path on this machine's disk (symlinks and ``resolve`` mean something there, not in a store)."""
    return isinstance(path, Path) or getattr(path, "protocol", "") in LOCAL


def publish_tree(local_dir: Path, dest: Any) -> int:
    """Copy the files under ``local_dir`` to ``dest`` (same relative paths, replaced); returns how many. Used for
    Data Docs, which Great Expectations builds on the local disk. Links are not followed or copied. Nothing to do
    when ``dest`` is that very folder (the store is the local disk GX built on)."""
    if is_local(dest) and Path(location(dest)).resolve() == local_dir.resolve():
        return 0
    count = 0
    for path in sorted(local_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        target = dest.joinpath(*path.relative_to(local_dir).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        count += 1
    return count
