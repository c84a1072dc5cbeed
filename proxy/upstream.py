"""The client of the FHIR store: one pooled connection set, exact timeouts, allow-listed headers.

urllib3 is used directly rather than through requests: it is the layer requests is built on,
and skipping requests' session machinery saves a noticeable share of the proxy's per-request
cost while giving the same pooling, streaming and timeout behaviour.
"""

from __future__ import annotations

import io
import logging
import time
from urllib.parse import urlencode, urlsplit

import urllib3

from proxy.errors import FhirError
from proxy.request_metrics import store_timer
from proxy.store_caller import CALLER_KEY, GRANT_HEADER, GRANT_KEY, HEADER, CallerSigner

log = logging.getLogger("fhirplug.upstream")
UNIQUE_RACE_ATTEMPTS = 3
# HAPI's words when two writes raced for one row of a unique index (two conditional creates of
# the same Organization, two creates of the same new tag): its transaction was rolled back, whole
_UNIQUE_RACE = (
    b"Unique index or primary key violation",  # H2
    b"duplicate key value violates unique constraint",  # PostgreSQL
    b"conditional constraint failure",  # HAPI's own words for two conditional creates of one
)


def _lost_a_unique_race(body: bytes) -> bool:
    return b"HAPI-0550" in body and any(marker in body for marker in _UNIQUE_RACE)


# Only these request headers travel to the store. Authorization stays at the proxy: the store
# trusts the proxy, not the caller.
REQUEST_HEADERS = (
    "accept",
    "cache-control",  # no-cache: past our read cache, and past the store's own
    "content-type",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
)

# Only these response headers travel back. The store's own X-Powered-By, Server, Date and
# transfer framing stay behind; X-Request-ID is set by the request-id plugin.
RESPONSE_HEADERS = (
    "content-type",
    "etag",
    "location",
    "content-location",
    "last-modified",
    "content-disposition",
    "retry-after",
    "x-progress",
)

CAPITALISED = {h: "-".join(p.capitalize() for p in h.split("-")) for h in RESPONSE_HEADERS}
CAPITALISED["etag"] = "ETag"


class _Fresh:
    """Mixed into a pool that does not reuse a connection idle for longer than ``max_idle_s``.

    The store closes a keep-alive connection it has not heard on for a while (Tomcat: 60 s). A
    request sent on such a connection just as the store closes it is lost with "remote end
    closed connection without response", and we cannot resend a write we are not sure about.
    Not reusing connections near that age keeps the race from happening at all.
    """

    def __init__(self, *args, max_idle_s: float, **kw):
        super().__init__(*args, **kw)
        self.max_idle_s = max_idle_s

    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)  # the pool class after us
        idle_since = getattr(conn, "fhirplug_idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > self.max_idle_s:
            conn.close()  # reconnects on its next request
        return conn

    def _put_conn(self, conn):
        if conn is not None:
            conn.fhirplug_idle_since = time.monotonic()
        super()._put_conn(conn)


class _FreshHTTP(_Fresh, urllib3.HTTPConnectionPool):
    pass


class _FreshHTTPS(_Fresh, urllib3.HTTPSConnectionPool):
    pass


class StoreClient:
    def __init__(
        self,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        max_idle_s: float = 20.0,
        signer: CallerSigner | None = None,
    ):
        self.signer = signer  # None: nothing is asserted, and the store answers only its metadata
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._path = parts.path
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._pool_timeout = connect_timeout  # the wait for a free connection, bounded like a connect
        https = parts.scheme == "https"
        self._pool = (_FreshHTTPS if https else _FreshHTTP)(
            parts.hostname,
            parts.port or (443 if https else 80),
            maxsize=pool_size,
            block=True,
            timeout=self.timeout,
            retries=False,
            max_idle_s=max_idle_s,
        )

    def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: bytes | None,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request; the response is returned unread so large bodies can stream.

        Any failure to reach the store, or a store that does not answer within the timeout,
        becomes a 503 OperationOutcome: the caller can safely retry later.
        """
        url = self._path + ("/" + path if path else "")
        if query:
            url += "?" + urlencode(query)
        headers = {**headers, "Accept-Encoding": "identity"}
        role, _, ods = headers.pop(CALLER_KEY, "admin;").partition(";")
        granted = headers.pop(GRANT_KEY, "")
        if self.signer is not None:
            headers[HEADER] = self.signer.header(role, ods)
            if granted:
                headers[GRANT_HEADER] = self.signer.grant(sorted(set(granted.split(","))))
        for attempt in range(UNIQUE_RACE_ATTEMPTS):
            answer = self._send_once(method, url, headers, body)
            if method not in ("POST", "PUT", "PATCH", "DELETE") or answer.status != 409:
                return answer
            data = answer.read()
            answer.release_conn()
            if not _lost_a_unique_race(data) or attempt == UNIQUE_RACE_ATTEMPTS - 1:
                return urllib3.HTTPResponse(
                    body=io.BytesIO(data), headers=answer.headers, status=409, preload_content=False
                )
            # HAPI rolled the whole write back: nothing of it was stored, so sending it again is
            # safe, and it now finds what the other writer created (a conditional create matches)
            log.info(
                "the store lost a race on a unique index (attempt %d); sending the write again", attempt + 1
            )
            time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def _send_once(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> urllib3.BaseHTTPResponse:
        try:
            with store_timer(method):
                return self._pool.urlopen(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    preload_content=False,
                    decode_content=True,
                    redirect=False,
                    retries=False,
                    timeout=self.timeout,
                    # urllib3 annotates pool_timeout as int, yet hands it to its own _get_conn(timeout:
                    # float) and queue.get: a float is what it uses, and its annotation is too narrow
                    pool_timeout=self._pool_timeout,  # type: ignore[arg-type]
                )
        except urllib3.exceptions.EmptyPoolError as exc:
            raise FhirError.unavailable(
                "The proxy has no free connection to the FHIR store; retry shortly", retry_after=1
            ) from exc
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError) as exc:
            log.warning("store timed out or dropped the connection: %s", exc)
            raise FhirError.unavailable(
                "The FHIR store did not answer in time; retry shortly (a write "
                "may have been applied: retry it conditionally)"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            log.warning("store unreachable: %s", exc)
            raise FhirError.unavailable("The FHIR store is unreachable; retry shortly") from exc

    def ping(self) -> bool:
        try:
            r = self._pool.urlopen(
                "GET",
                self._path + "/metadata?_summary=true",
                retries=False,
                headers={"Accept": "application/fhir+json"},
            )
            return r.status == 200
        except urllib3.exceptions.HTTPError:
            return False
