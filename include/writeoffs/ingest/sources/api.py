"""HTTP sources: a paginated JSON API, with retries and backoff on rate limiting and server failures."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urljoin

from writeoffs.errors import SourceUnavailable
from writeoffs.ingest.config import SourceConfig, expand
from writeoffs.ingest.sources.base import Artifact, BadRecord, RawChunk, _err, _strings_table, _text

#: HTTP statuses worth retrying: rate limiting and server-side failures. 4xx other than 429 are our fault.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 100_000


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """Credentials from the Airflow HTTP connection: basic auth and/or extra headers (e.g. a bearer token)."""

    username: str | None = None
    password: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpOptions:
    """Transport settings from the Airflow HTTP connection's extras: a timeout overriding the source's ``timeout_s``,
    TLS verification (False, or a CA bundle path), proxies per scheme, a client certificate."""

    timeout_s: float | None = None
    verify: bool | str = True
    proxies: Mapping[str, str] = field(default_factory=dict)
    cert: str | tuple[str, str] | None = None


class HttpSource:
    """A paginated JSON API: ``{"data": [...], "next": "<relative url>" | null}`` (or ``?page=k``)."""

    def __init__(
        self, config: SourceConfig, base_url: str, auth: HttpAuth | None = None, options: HttpOptions | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.auth = auth or HttpAuth()
        self.options = options or HttpOptions()
        self._artifacts: list[Artifact] = []
        self.sleep = time.sleep  # replaced by tests that want to count waits, never mocked away

    def artifacts(self) -> list[Artifact]:
        return list(self._artifacts)

    def control(self, as_of: date) -> dict[str, Any] | None:
        return None

    def _get(self, session: Any, url: str, page: str) -> bytes:
        import requests

        cfg = self.config
        timeout = self.options.timeout_s or cfg.timeout_s
        last = ""
        for attempt in range(cfg.retries + 1):
            try:
                resp = session.get(url, timeout=timeout)
            except requests.Timeout:
                last = f"timed out after {timeout:g} s"
            except requests.ConnectionError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    return resp.content
                if resp.status_code not in RETRY_STATUSES:
                    raise _err(cfg, f"HTTP {resp.status_code} {resp.reason} (not retried)", file=page)
                last = f"HTTP {resp.status_code} {resp.reason}"
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit() and attempt < cfg.retries:
                    self.sleep(min(float(retry_after), 60.0))
                    continue
            if attempt < cfg.retries:
                # Exponential backoff: a struggling server gets more room with each try.
                self.sleep(cfg.backoff_s * (2**attempt))
        raise SourceUnavailable(f"{last} after {cfg.retries + 1} attempt(s)", source=cfg.name, file=page)

    def read(self, dataset: str, as_of: date) -> Iterator[RawChunk]:
        import pyarrow as pa
        import requests

        cfg = self.config
        ds = cfg.datasets[dataset]
        session = requests.Session()
        if self.auth.username:
            session.auth = (self.auth.username, self.auth.password or "")
        session.headers.update(dict(self.auth.headers))
        session.verify = self.options.verify
        session.proxies.update(dict(self.options.proxies))
        session.cert = self.options.cert
        session.headers.setdefault("Accept", "application/json")
        url = urljoin(self.base_url, expand(ds.endpoint or "", as_of))
        if cfg.page_param:
            url = f"{url}{'&' if '?' in url else '?'}{cfg.page_param}=1"
        seen: set[str] = set()
        start = 1
        page_no = 1
        emitted = False
        try:
            while url:
                if url in seen or len(seen) >= MAX_PAGES:
                    raise _err(cfg, "pagination loops (a page links back to an earlier one)", file=_page_name(url))
                seen.add(url)
                page = _page_name(url)
                body = self._get(session, url, page)
                self._artifacts.append(Artifact(dataset, page, hashlib.sha256(body).hexdigest(), len(body)))
                try:
                    doc = json.loads(body, parse_float=Decimal)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise _err(
                        cfg, f"response is not valid JSON ({exc.__class__.__name__}: {exc})", file=page
                    ) from None
                if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
                    raise _err(cfg, 'response has no "data" list', file=page, fld="data")
                records = doc["data"]
                columns: list[str] = []
                bad: list[BadRecord] = []
                good: list[dict[str, Any]] = []
                nums: list[int] = []
                for i, rec in enumerate(records):
                    if not isinstance(rec, dict):
                        bad.append(
                            BadRecord(
                                start + i,
                                "not_an_object",
                                "record is not a JSON object",
                                json.dumps(rec, default=str)[:500],
                            )
                        )
                        continue
                    for k in rec:
                        if k not in columns:
                            columns.append(k)
                    good.append(rec)
                    nums.append(start + i)
                rows = [[_text(r.get(c), cfg.date_format, cfg.negative_style) for c in columns] for r in good]
                yield RawChunk(dataset, page, _strings_table(columns, rows), pa.array(nums, pa.int64()), bad)
                emitted = True
                start += len(records)
                page_no += 1
                if cfg.page_param:
                    total = doc.get("total_pages")
                    url = (
                        None
                        if not records or (isinstance(total, int) and page_no > total)
                        else (re.sub(rf"{cfg.page_param}=\d+", f"{cfg.page_param}={page_no}", url))
                    )
                else:
                    nxt = doc.get("next")
                    url = urljoin(url, nxt) if nxt else None
        finally:
            session.close()
        if not emitted:
            yield RawChunk(dataset, "", _strings_table([], []), pa.array([], pa.int64()))


def _page_name(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[-1] or url
