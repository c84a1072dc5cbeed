"""What werkzeug and gunicorn would answer themselves leaves as an OperationOutcome."""

import json
import socket

import pytest
from gunicorn.http import errors as gerrors

from proxy import gunicorn_workers
from proxy.app import create_app
from proxy.config import Settings
from tests.support.fake_store import PUBLIC_BASE, FakeStore


@pytest.fixture
def client():
    app = create_app(
        Settings(plugins=["request_id"], auth=False, public_base_url=PUBLIC_BASE), store=FakeStore()
    )

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    return app.test_client()


def outcome(r, status):
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    oo = r.get_json()
    assert oo["resourceType"] == "OperationOutcome"
    assert all(i["severity"] and i["code"] for i in oo["issue"])
    return oo


@pytest.mark.parametrize("method", ["PROPFIND", "FOO", "TRACE"])
def test_a_method_no_route_takes_is_a_405_outcome_with_allow(client, method):
    r = client.open("/fhir/Patient", method=method)
    oo = outcome(r, 405)
    assert method in oo["issue"][0]["diagnostics"] and "GET" in r.headers["Allow"]


def test_a_path_no_route_matches_is_a_404_outcome(client):
    outcome(client.get("/fhir/Patient/a%0d%0ab"), 404)


def test_an_exception_outside_the_pipeline_is_a_500_outcome_without_its_details(client):
    r = client.get("/boom")
    oo = outcome(r, 500)
    assert "secret" not in r.get_data(as_text=True) and oo["issue"][0]["code"] == "exception"


def test_negative_offset_is_a_400_outcome_before_the_store(client):
    oo = outcome(client.get("/fhir/Patient?_offset=-5"), 400)
    assert oo["issue"][0]["expression"] == ["_offset"]


@pytest.mark.parametrize(
    "exc, status",
    [
        (gerrors.InvalidRequestLine("GET /a\rb HTTP/1.1"), 400),
        (gerrors.InvalidRequestMethod("get"), 400),
        (gerrors.InvalidHTTPVersion("9.9"), 400),
        (gerrors.InvalidHeaderName("Bad Header"), 400),
        (gerrors.LimitRequestLine(9000, 4094), 414),
        (gerrors.LimitRequestHeaders("too many"), 431),
        (gerrors.InvalidChunkSize(b"zz"), 400),
        (gerrors.ChunkMissingTerminator(b"de"), 400),
        (gerrors.UnsupportedTransferCoding("nope"), 400),
        (gerrors.ExpectationFailed("200-ok"), 417),
        (RuntimeError("bug"), 500),
    ],
)
def test_gunicorns_refusals_map_to_statuses(exc, status):
    assert gunicorn_workers.outcome_for(exc).status == status


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, *a):
        self.lines.append(a)

    debug = exception = warning


def handle(exc, req=None) -> bytes:
    worker = gunicorn_workers._FhirErrors()
    worker.log = Log()
    a, b = socket.socketpair()
    with a, b:
        worker.handle_error(req, a, ("127.0.0.1", 1), exc)
        a.close()
        return b.recv(65536)


def test_the_worker_writes_an_outcome_and_closes():
    answer = handle(gerrors.LimitRequestLine(9000, 4094))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long")
    assert b"Content-Type: application/fhir+json" in head and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body)["resourceType"] == "OperationOutcome"


def test_a_bad_chunk_left_unread_after_an_answer_closes_silently():
    assert handle(gerrors.InvalidChunkSize(b"zz"), req=None) == b""


def test_the_configuration_selects_the_fhir_workers(monkeypatch):
    import importlib

    from proxy import gunicorn_conf

    monkeypatch.setenv("FHIRPLUG_WORKER_CLASS", "gthread")
    assert importlib.reload(gunicorn_conf).worker_class == "proxy.gunicorn_workers.FhirThreadWorker"
    monkeypatch.setenv("FHIRPLUG_WORKER_CLASS", "gevent")
    assert importlib.reload(gunicorn_conf).worker_class == "proxy.gunicorn_workers.FhirGeventWorker"
