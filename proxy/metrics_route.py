"""The metrics in the Prometheus text format, served two ways:

- the **metrics listener** (``FHIRPLUG_METRICS_LISTEN``, default 127.0.0.1:9464): a port of its
  own, without OAuth, as Prometheus scrapes; bind it to loopback or a private interface only;
- ``GET /metrics`` on the FHIR port, for an administrator's token (an operator's look from
  outside, where the listener is not reachable). It runs through ``serve`` like /healthz, so the
  request id and access log hooks run.

Both answer the same text: the request metrics (proxy/request_metrics.py) and every plugin's
(``fhirplug_metrics``: the forwarding ones)."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask
from redis.exceptions import RedisError

from proxy.context import Interaction
from proxy.errors import FhirError
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.metrics")
# the text format 0.0.4, as every Prometheus reads it (prometheus_client's generate_latest writes it)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATH = "/metrics"


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape never holds the process at exit


def register(
    app: Flask,
    serve,
    metrics_text: Callable[[], str],
    authorize: Callable[[str | None], None],
) -> None:
    """``authorize(authorization_header)`` raises ``FhirError`` (401/403) unless the caller may
    read the metrics; ``metrics_text()`` gives the exposition (every plugin's ``fhirplug_metrics``)."""

    @app.get(PATH)
    def metrics():
        def handler(ctx):
            authorize(ctx.request.header("Authorization"))
            try:
                text = metrics_text()
            except RedisError as exc:
                log.exception("metrics: Redis unreachable")
                raise FhirError(503, "The metrics store is not answering", code="transient") from exc
            return ProxyResponse(
                200, {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}, (text.encode(),)
            )

        return serve(lambda headers: Interaction("health", "GET"), handler)


# ---- the metrics listener: the same text on a port of its own, without OAuth -------------------

LISTEN_ENV = "FHIRPLUG_METRICS_LISTEN"
DEFAULT_LISTEN = "127.0.0.1:9464"


def parse_listen(value: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6) to an address; ``off`` (or empty) to None. Raises
    ValueError on anything else, so a typo stops the start rather than exposing nothing."""
    value = value.strip()
    if value.lower() in ("", "off"):
        return None
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{LISTEN_ENV}={value!r}: expected host:port (e.g. {DEFAULT_LISTEN}) or off")
    return host, int(port)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes every 15 s: not logged
        pass


def metrics_app(metrics_text: Callable[[], str]):
    """The listener's WSGI app: ``GET /metrics`` (and ``/``) answers the exposition."""

    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not found: the metrics are at /metrics\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [b"GET only\n"]
        try:
            body = metrics_text().encode()
        except RedisError:
            log.exception("metrics: Redis unreachable")
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"The metrics store (Redis) is not answering\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")])
        return [body]

    return app


def hold_listener(
    address: tuple[str, int], metrics_text: Callable[[], str], retry_s: float = 5.0
) -> threading.Thread:
    """Serve the metrics on ``address`` from a background thread of this process, once it can
    bind it. Each gunicorn worker calls this: the first to bind serves (every process's values
    are in the multiprocess files, so any one of them answers the whole proxy), the others retry
    every ``retry_s`` and one takes over within seconds after the holder exits."""

    def run() -> None:
        said = False
        while True:
            try:
                server = make_server(
                    address[0], address[1], metrics_app(metrics_text), ThreadingWSGIServer, _QuietHandler
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE and not said:
                    log.error("metrics listener: cannot bind %s:%s: %s", *address, exc)
                    said = True
                time.sleep(retry_s)
                continue
            log.info(
                "metrics listener on http://%s:%s/metrics",
                *address,
                extra={"fields": {"event": "metrics_listener", "pid": os.getpid()}},
            )
            server.serve_forever()

    thread = threading.Thread(target=run, name="metrics-listener", daemon=True)
    thread.start()
    return thread
