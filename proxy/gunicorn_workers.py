"""gunicorn's gevent and gthread workers, answering what gunicorn refuses itself in FHIR.

gunicorn answers a request it cannot parse (a bad request line or method, a request line or
headers over its limits, bad chunking, an unknown transfer coding) before the app sees it, with
an HTML page. These workers write the same status as an OperationOutcome instead.
``proxy/gunicorn_conf.py`` selects them: ``FHIRPLUG_WORKER_CLASS=gevent`` (default) or ``gthread``.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker

from proxy.errors import FHIR_JSON, FhirError

REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
_CHUNKING = (
    http_errors.InvalidChunkSize,
    http_errors.ChunkMissingTerminator,
    http_errors.InvalidChunkExtension,
)


def outcome_for(exc: BaseException) -> FhirError:
    """The status and words for an exception gunicorn raised before (or instead of) the app."""
    e = http_errors
    if isinstance(exc, e.LimitRequestLine):
        return FhirError(414, "The request line is too long", code="too-long")
    if isinstance(exc, e.LimitRequestHeaders):
        return FhirError(431, "The request headers are too large or too many", code="too-long")
    # gunicorn answers these two 501; they are the caller's mistakes, and a 5xx would say ours
    if isinstance(exc, e.InvalidRequestMethod):
        return FhirError(400, "The request method is not a valid HTTP method name", code="not-supported")
    if isinstance(exc, e.UnsupportedTransferCoding):
        return FhirError(400, f"Unsupported transfer coding: {exc}", code="not-supported")
    if isinstance(exc, e.ExpectationFailed):
        return FhirError(417, f"Unsupported expectation: {exc}", code="not-supported")
    if isinstance(exc, e.ForbiddenProxyRequest):
        return FhirError(403, "Request forbidden", code="forbidden")
    if isinstance(exc, ssl.SSLError):
        return FhirError(403, "TLS handshake refused", code="security")
    if isinstance(exc, (e.InvalidResponseHeader, e.InvalidResponseHeaderName, e.ConfigurationProblem)):
        return FhirError(500, "Internal error in the proxy", code="exception")
    if isinstance(exc, e.InvalidRequestLine):
        return FhirError(400, "The request line is not valid HTTP (a space, CR, LF or NUL in the target?)")
    if isinstance(exc, _CHUNKING):
        return FhirError(400, f"The chunked request body is malformed: {exc}", code="structure")
    if isinstance(exc, e.ParseException):
        return FhirError(400, f"The request is not valid HTTP: {type(exc).__name__}", code="structure")
    return FhirError(500, "Internal error in the proxy", code="exception")


def response_bytes(err: FhirError) -> bytes:
    body = json.dumps(err.to_resource(), separators=(",", ":")).encode()
    reason = REASONS.get(err.status, "Error")
    head = (
        f"HTTP/1.1 {err.status} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {FHIR_JSON}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


LINGER_S = 1.0  # at most this long reading what the caller still sends after a refusal
LINGER_BYTES = 1 << 20


def linger(client) -> None:
    """Close politely: stop writing, then read (and drop) what the caller is still sending.

    Closing a socket with unread bytes in it makes the kernel answer with a reset, which can
    destroy the refusal before the caller reads it (an oversized request line or header is
    exactly that case)."""
    try:
        client.shutdown(socket.SHUT_WR)
        client.settimeout(LINGER_S)
        deadline, drained = time.monotonic() + LINGER_S, 0
        while time.monotonic() < deadline and drained < LINGER_BYTES:
            data = client.recv(64 * 1024)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass


class _FhirErrors:
    """Overrides gunicorn's ``handle_error``: same logging and access log, a FHIR body."""

    def handle_error(self, req, client, addr, exc):
        if req is None and isinstance(exc, _CHUNKING):
            # the app answered without reading a malformed body; gunicorn failed discarding it
            # before the next request: the caller has its answer, so only close the connection
            self.log.debug("malformed body left unread: %s", exc)
            return
        err = outcome_for(exc)
        if err.status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], exc)
        try:
            util.write_nonblock(client, response_bytes(err))
        except Exception:
            self.log.debug("Failed to send error message.")
            return
        linger(client)


class FhirGeventWorker(_FhirErrors, GeventWorker):
    pass


class FhirThreadWorker(_FhirErrors, ThreadWorker):
    pass
