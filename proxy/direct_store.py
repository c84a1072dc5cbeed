"""The one way to talk to the store past the proxy (workers, CLI, profile loader): every request
signed as admin (the store answers only signed requests) and every write inside the read cache's
write fence (proxy/read_cache.py), so no proxy's cached read outlives a write made here."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import requests
from redis import Redis

from proxy.read_cache import WriteFence, written_types
from proxy.store_caller import store_auth

ACCEPT = {"Accept": "application/fhir+json"}


class DirectStore:
    """Admin requests to the store at ``base_url``; writes fenced with the caller's ``redis``.

    A write raises ``FhirError`` (503) when Redis cannot record it, before anything is sent;
    ``marker_ttl_s`` is how long the write's fence marker lives if it never closes (longer than
    the store could still be working on it). ``redis=None`` is only for a caller that has no
    Redis at all, hence no proxy and no cache to keep honest.
    """

    def __init__(
        self,
        base_url: str,
        redis: Redis | None,
        marker_ttl_s: float = 120.0,
        auth: requests.auth.AuthBase | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.fence = WriteFence(redis, marker_ttl_s) if redis is not None else None
        self.http = requests.Session()
        self.http.auth = auth if auth is not None else store_auth()

    def url(self, path: str = "") -> str:
        return f"{self.base_url}/{path}" if path else self.base_url

    def get(self, path: str, params: Any = None, timeout: float = 10.0) -> requests.Response:
        """A read (not fenced)."""
        return self.http.get(self.url(path), params=params, headers=ACCEPT, timeout=timeout)

    def read_batch(self, bundle: dict, timeout: float = 120.0) -> requests.Response:
        """A batch of reads (``GET`` entries only) in one request; reads, so not fenced."""
        if any((e.get("request") or {}).get("method") != "GET" for e in bundle.get("entry") or []):
            raise ValueError("read_batch takes GET entries only; write with write()")
        return self.http.post(self.url(), json=bundle, headers=ACCEPT, timeout=timeout)

    def write(
        self,
        method: str,
        path: str = "",
        json: Any = None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """A write (POST, PUT, DELETE, a transaction to the base), inside the write fence.
        ``headers``: extra request headers (an ``If-Match`` for a version-checked update)."""
        if self.fence is None:
            return self._send(method, path, json, timeout, headers)
        path_only, _, query = path.partition("?")
        with self.fence.write(written_types(method, path_only, parse_qsl(query), json)):
            return self._send(method, path, json, timeout, headers)

    def post(self, path: str, json: Any, timeout: float = 10.0) -> requests.Response:
        return self.write("POST", path, json, timeout)

    def put(self, path: str, json: Any, timeout: float = 10.0) -> requests.Response:
        return self.write("PUT", path, json, timeout)

    def delete(self, path: str, timeout: float = 10.0) -> requests.Response:
        return self.write("DELETE", path, None, timeout)

    def _send(
        self, method: str, path: str, json: Any, timeout: float, extra: dict[str, str] | None = None
    ) -> requests.Response:
        headers = ACCEPT if json is None else {**ACCEPT, "Content-Type": "application/fhir+json"}
        if extra:
            headers = {**headers, **extra}
        return self.http.request(method, self.url(path), json=json, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DirectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
