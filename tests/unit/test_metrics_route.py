"""The /metrics route (proxy/metrics_route.py): its content type, its authorization, and a 503
when Redis is down; the metrics listener: its address, contention for its port, no token.
The metrics themselves: tests/unit/forwarding/test_metrics.py."""

from __future__ import annotations

import socket
import time

import pytest
import requests
from flask import Flask, Response, request

from proxy import metrics_route
from proxy.context import Interaction, RequestContext, make_request_view
from proxy.errors import FhirError


def _app(metrics_text, authorize) -> Flask:
    """The route on a bare app, with a ``serve`` that does what the proxy's does for it: build the
    context, run the handler, turn a FhirError into its status."""
    app = Flask("metrics-test")
    seen = {}

    def serve(interaction_of, handler):
        view = make_request_view(
            request.method, request.path, "", [], dict(request.headers), request.content_type, None
        )
        ctx = RequestContext(request=view, interaction=interaction_of(view.headers))
        seen["interaction"] = ctx.interaction
        try:
            resp = handler(ctx)
        except FhirError as exc:
            return Response(exc.diagnostics, status=exc.status, headers=exc.headers)
        return Response(b"".join(resp.iter_body()), status=resp.status, headers=resp.headers)

    metrics_route.register(app, serve, metrics_text, authorize)
    app.config["seen"] = seen
    return app


def _only(token: str):
    def authorize(header):
        if header is None:
            raise FhirError(401, "no token", headers={"WWW-Authenticate": "Bearer"})
        if header != f"Bearer {token}":
            raise FhirError(403, "not for you")

    return authorize


def test_metrics_answers_the_exposition_as_text_plain_version_0_0_4():
    app = _app(lambda: "# HELP x y\n# TYPE x counter\nx 1\n", _only("t"))
    r = app.test_client().get("/metrics", headers={"Authorization": "Bearer t"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert r.data == b"# HELP x y\n# TYPE x counter\nx 1\n"
    assert app.config["seen"]["interaction"] == Interaction("health", "GET")


def test_metrics_without_a_token_is_refused_and_not_computed():
    computed = []
    app = _app(lambda: computed.append(1) or "", _only("t"))
    r = app.test_client().get("/metrics")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert computed == []


def test_metrics_with_someone_elses_token_is_forbidden():
    r = _app(lambda: "", _only("t")).test_client().get("/metrics", headers={"Authorization": "Bearer u"})
    assert r.status_code == 403


def test_metrics_when_redis_is_down_is_a_503():
    from redis.exceptions import ConnectionError as RedisConnectionError

    def broken():
        raise RedisConnectionError("down")

    r = _app(broken, _only("t")).test_client().get("/metrics", headers={"Authorization": "Bearer t"})
    assert r.status_code == 503


# ---- the metrics listener -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:9464", ("::1", 9464)),
        ("off", None),
        ("", None),
    ],
)
def test_the_listen_address_is_host_and_port_or_off(value, address):
    assert metrics_route.parse_listen(value) == address


@pytest.mark.parametrize(
    "value", ["9464", "localhost", "host:port", "127.0.0.1:0", "127.0.0.1:70000", ":9464"]
)
def test_a_malformed_listen_address_is_refused(value):
    with pytest.raises(ValueError, match="FHIRPLUG_METRICS_LISTEN"):
        metrics_route.parse_listen(value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_listener_answers_the_text_without_a_token_and_nothing_else():
    port = _free_port()
    metrics_route.hold_listener(("127.0.0.1", port), lambda: "# TYPE x counter\nx_total 1.0\n")
    r = _get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200 and r.text == "# TYPE x counter\nx_total 1.0\n"
    assert r.headers["Content-Type"] == metrics_route.CONTENT_TYPE
    assert requests.get(f"http://127.0.0.1:{port}/fhir/Patient", timeout=2).status_code == 404
    assert requests.post(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 405


def test_a_second_contender_waits_while_the_port_is_held_and_takes_it_when_freed():
    port = _free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    metrics_route.hold_listener(("127.0.0.1", port), lambda: "taken over\n", retry_s=0.1)
    time.sleep(0.3)  # it tried and failed: the port is someone else's
    holder.close()
    assert _get(f"http://127.0.0.1:{port}/metrics").text == "taken over\n"


def test_the_listener_answers_503_when_redis_is_down():
    from redis.exceptions import ConnectionError as RedisDown

    def broken():
        raise RedisDown("down")

    port = _free_port()
    metrics_route.hold_listener(("127.0.0.1", port), broken)
    assert _get(f"http://127.0.0.1:{port}/metrics").status_code == 503
