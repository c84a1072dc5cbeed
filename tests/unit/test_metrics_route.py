"""The /metrics route (proxy/metrics_route.py): its content type, its authorization, and a 503
when Redis is down. The metrics themselves: tests/unit/forwarding/test_metrics.py."""

from __future__ import annotations

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
