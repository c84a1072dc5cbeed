"""The pure parts of the delivery metrics (buckets, escaping, number format) and the /metrics route.
What is read from and written to Redis is tested against the real one in
tests/integration/test_queue_cli.py."""

from __future__ import annotations

import math

import pytest
from flask import Flask, Response, request

from proxy import metrics_route
from proxy.context import Interaction, RequestContext, make_request_view
from proxy.errors import FhirError
from worker import metrics


@pytest.mark.parametrize(
    ("value", "le"),
    [
        (0.0, 0.05),
        (0.05, 0.05),
        (0.0500001, 0.1),
        (0.7, 1),
        (1, 1),
        (299.9, 300),
        (300, 300),
        (301, math.inf),
    ],
)
def test_a_value_falls_in_the_smallest_bucket_whose_bound_it_does_not_exceed(value, le):
    assert metrics.bucket_for(value) == le


def test_bucket_labels_are_written_as_the_official_clients_write_them():
    assert [metrics.bucket_label(b) for b in metrics.BUCKETS] == [
        "0.05",
        "0.1",
        "0.25",
        "0.5",
        "1.0",
        "2.5",
        "5.0",
        "10.0",
        "30.0",
        "60.0",
        "300.0",
        "+Inf",
    ]


def test_stored_bucket_counts_become_cumulative_and_end_with_the_total():
    stored = {"0.05": "2", "1.0": "3", "+Inf": "1", "count": "6", "sum": "500.5"}
    series = dict(metrics.cumulative(stored))
    assert series["0.05"] == 2
    assert series["0.5"] == 2  # nothing between 0.05 and 0.5: the count carries over
    assert series["1.0"] == 5
    assert series["300.0"] == 5
    assert series["+Inf"] == 6
    values = [v for _, v in metrics.cumulative(stored)]
    assert values == sorted(values)


def test_no_observations_give_zero_in_every_bucket():
    assert all(v == 0 for _, v in metrics.cumulative({}))


def test_label_values_escape_backslash_quote_and_newline():
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.labels(partner='X"1', le="+Inf") == '{partner="X\\"1",le="+Inf"}'


def test_help_text_escapes_backslash_and_newline_but_not_quotes():
    assert metrics.escape_help('say "hi"\\\nnow') == 'say "hi"\\\\\\nnow'


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (0.25, "0.25"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN")],
)
def test_sample_values(value, text):
    assert metrics.format_value(value) == text


def test_record_delivered_files_one_observation_in_one_bucket():
    calls = []

    class Pipe:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a))

    class FakeRedis:
        def pipeline(self, transaction=True):
            return Pipe()

    metrics.record_delivered(FakeRedis(), "FA001", 0.7)
    assert ("hincrby", ("fhirplug:metrics:latency:FA001", "1.0", 1)) in calls
    assert ("hincrbyfloat", ("fhirplug:metrics:latency:FA001", "sum", 0.7)) in calls
    assert ("hincrby", ("fhirplug:metrics:counters:FA001", "delivered", 1)) in calls
    assert [c for c in calls if c[0] == "hincrby" and c[1][0].startswith("fhirplug:metrics:latency")] == [
        ("hincrby", ("fhirplug:metrics:latency:FA001", "1.0", 1)),
        ("hincrby", ("fhirplug:metrics:latency:FA001", "count", 1)),
    ]
    assert calls[-1] == ("execute", ())


# ---- the route -------------------------------------------------------------------------------


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
