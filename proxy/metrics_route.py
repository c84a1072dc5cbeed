"""``GET /metrics``: the delivery metrics in the Prometheus text format, for callers allowed to
read them. It runs through ``serve`` like /healthz, so the request id and access log hooks run."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask
from redis.exceptions import RedisError

from proxy.context import Interaction
from proxy.errors import FhirError
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PATH = "/metrics"


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
