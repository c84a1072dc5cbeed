"""What the proxy itself refuses leaves as an OperationOutcome with the right status."""

import json
import socket
import time

import pytest
import requests

from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def assert_outcome(r, status, expression=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    oo = r.json()
    assert oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["severity"] == "error" and oo["issue"][0]["diagnostics"]
    assert "Traceback" not in r.text
    if expression:
        assert oo["issue"][0]["expression"] == expression
    return oo


def test_malformed_json_is_400(stack, http):
    r = http.post(f"{stack.fhir}/Patient", data=b'{"resourceType": "Patient",', headers=FHIR_JSON)
    assert_outcome(r, 400)


def test_body_that_is_not_a_resource_is_400(stack, http):
    r = http.post(f"{stack.fhir}/Patient", data=b"[1, 2]", headers=FHIR_JSON)
    assert_outcome(r, 400, ["resourceType"])


def test_resource_type_not_matching_the_url_is_400(stack, http):
    r = http.post(f"{stack.fhir}/Patient", json={"resourceType": "Observation"}, headers=FHIR_JSON)
    assert_outcome(r, 400, ["resourceType"])


def test_update_whose_id_differs_from_the_url_is_400(stack, http):
    r = http.put(f"{stack.fhir}/Patient/a1", json={"resourceType": "Patient", "id": "b2"}, headers=FHIR_JSON)
    assert_outcome(r, 400, ["Patient.id"])


@pytest.fixture(scope="module")
def small_limit_proxy(stack):
    return stack.start_proxy({"FHIRPLUG_MAX_BODY_BYTES": "4096"})[0]


@pytest.fixture(scope="module")
def small_http(stack, small_limit_proxy):
    return stack.session(small_limit_proxy)


def test_body_over_the_limit_is_413(stack, small_limit_proxy, small_http):
    body = json.dumps({"resourceType": "Patient", "name": [{"family": "x" * 8000}]})
    r = small_http.post(f"{small_limit_proxy}/Patient", data=body, headers=FHIR_JSON)
    assert_outcome(r, 413)


def test_chunked_body_over_the_limit_is_413(stack, small_limit_proxy, small_http):
    def chunks():
        yield b'{"resourceType": "Patient", "name": [{"family": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    r = small_http.post(f"{small_limit_proxy}/Patient", data=chunks(), headers=FHIR_JSON)
    assert_outcome(r, 413)


def test_body_under_the_limit_passes(stack, small_limit_proxy, small_http):
    r = small_http.post(f"{small_limit_proxy}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 201


# FHIR XML is read (tests/integration/test_xml.py); these are not FHIR at all
@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream"])
def test_unsupported_media_type_is_415(stack, http, ctype):
    r = http.post(f"{stack.fhir}/Patient", data=b"<Patient/>", headers={"Content-Type": ctype})
    assert_outcome(r, 415)


@pytest.mark.parametrize("path", ["/fhir/Patient/1/_history/1/extra", "/fhir/lowercase", "/nothing/here"])
def test_unknown_route_is_404(stack, http, path):
    assert_outcome(http.get(stack.proxy + path), 404)


def test_wrong_method_is_405(stack, http):
    assert_outcome(http.delete(f"{stack.fhir}/metadata"), 405)


def test_store_unreachable_is_503_quickly(stack):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proxy, _ = stack.start_proxy({"FHIRPLUG_STORE_URL": f"http://127.0.0.1:{dead}/fhir"})
    t0 = time.monotonic()
    r = stack.session(proxy).get(f"{proxy}/Patient/1", timeout=30)
    assert_outcome(r, 503)
    assert time.monotonic() - t0 < 5
    assert r.headers.get("Retry-After")


def test_store_that_never_answers_is_503_within_the_timeout(stack):
    with socket.socket() as black_hole:  # accepts connections (kernel backlog), never answers
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        proxy, _ = stack.start_proxy(
            {
                "FHIRPLUG_STORE_URL": f"http://127.0.0.1:{port}/fhir",
                "FHIRPLUG_STORE_READ_TIMEOUT": "2",
            }
        )
        t0 = time.monotonic()
        r = stack.session(proxy).post(
            f"{proxy}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON, timeout=30
        )
        elapsed = time.monotonic() - t0
    assert_outcome(r, 503)
    assert 1.5 < elapsed < 10


def test_a_refused_write_leaves_nothing_in_the_store(stack, http):
    family = f"Refused{time.time_ns()}"
    http.post(
        f"{stack.fhir}/Patient",
        json={"resourceType": "Observation", "name": [{"family": family}]},
        headers=FHIR_JSON,
    )
    direct = requests.get(f"{stack.store_url}/Patient", params={"family": family}, auth=store_auth()).json()
    assert direct["total"] == 0
