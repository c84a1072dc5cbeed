"""EPS $prepare served by the proxy: who may call it, the body it takes, the client's algorithm,
and its line in the CapabilityStatement. ``eps.prepare`` itself is replaced by a recorder: its
rules are tested in tests/unit/eps; here only the wiring is."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest

from eps.prepare import HashAlgorithm, Prepared
from plugins import eps_prepare as plugin_module
from plugins.eps_prepare import CAPABILITY, EpsPrepare
from proxy.app import create_app
from proxy.auth.registry import KEY, ClientRecord
from proxy.config import DEFAULT_PLUGINS, Settings
from proxy.context import Client
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from tests.support.fake_redis import FakeRedis
from tests.support.fake_store import PUBLIC_BASE, FakeStore
from tests.support.plugin_context import request_context

PRESCRIBER = Client("gp-system", "A83008", "prescriber")
MESSAGE = {"resourceType": "Bundle", "type": "message", "entry": []}
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def prepared(monkeypatch):
    """Replaces eps.prepare.prepare in the plugin; records what it was given."""
    calls: list[tuple[object, HashAlgorithm]] = []

    def fake(bundle, algorithm=HashAlgorithm.RS256):
        calls.append((bundle, algorithm))
        return Prepared("ZGlnZXN0", "2024-12-09T11:50:04+00:00", algorithm)

    monkeypatch.setattr(plugin_module, "prepare", fake)
    return calls


def registered(redis: FakeRedis, client_id: str, **fields) -> None:
    record = ClientRecord(client_id, "A83008", "prescriber", ["system/MedicationRequest.c"], **fields)
    redis.hset(KEY, client_id, record.to_json())


def call(
    body: bytes | None = None,
    *,
    client: Client = PRESCRIBER,
    method: str = "POST",
    content_type: str | None = FHIR_JSON,
    redis: FakeRedis | None = None,
    resource_type: str | None = None,
    operation: str = "$prepare",
):
    ctx = request_context("operation", method, resource_type, client=client)
    ctx.interaction = replace(ctx.interaction, operation=operation)
    ctx.request = replace(ctx.request, content_type=content_type)
    raw = json.dumps(MESSAGE).encode() if body is None else body
    ctx.body_source = lambda: raw
    return EpsPrepare(redis or FakeRedis()).fhirplug_request(ctx=ctx)


def refusal(**kwargs) -> FhirError:
    with pytest.raises(FhirError) as raised:
        call(**kwargs)
    return raised.value


def test_a_prescriber_gets_the_parameters_prepare_computes(prepared):
    answer = call()
    assert isinstance(answer, ProxyResponse) and answer.status == 200
    assert (
        answer.resource
        == Prepared("ZGlnZXN0", "2024-12-09T11:50:04+00:00", HashAlgorithm.RS256).to_parameters()
    )
    assert prepared == [(MESSAGE, HashAlgorithm.RS256)]


def test_an_administrator_may_call_it_too(prepared):
    assert call(client=Client("ops", "", "admin")).status == 200


@pytest.mark.parametrize("role", ["spoke", "hub", "reader", "validator"])
def test_other_roles_are_forbidden(prepared, role):
    err = refusal(client=Client("x", "FA565", role))
    assert err.status == 403 and prepared == []


def test_a_client_registered_for_rs1_gets_rs1(prepared):
    redis = FakeRedis()
    registered(redis, "gp-system", eps_signing_algorithm="RS1")
    call(redis=redis)
    assert prepared[0][1] is HashAlgorithm.RS1


def test_a_client_registered_without_a_choice_gets_rs256(prepared):
    redis = FakeRedis()
    registered(redis, "gp-system")
    call(redis=redis)
    assert prepared[0][1] is HashAlgorithm.RS256


def test_a_record_made_before_the_attribute_existed_gets_rs256(prepared):
    redis = FakeRedis()
    old = json.loads(ClientRecord("gp-system", "A83008", "prescriber", []).to_json())
    del old["eps_signing_algorithm"]
    redis.hset(KEY, "gp-system", json.dumps(old))
    call(redis=redis)
    assert prepared[0][1] is HashAlgorithm.RS256


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
def test_only_post_is_served(prepared, method):
    err = refusal(method=method)
    assert err.status == 405 and err.headers["Allow"] == "POST"


def test_what_prepare_refuses_is_its_400(monkeypatch):
    def refuse(bundle, algorithm=HashAlgorithm.RS256):
        raise FhirError(400, "wrong event", expression=["Bundle.entry[0].resource.eventCoding"])

    monkeypatch.setattr(plugin_module, "prepare", refuse)
    err = refusal()
    assert (err.status, err.expression) == (400, ["Bundle.entry[0].resource.eventCoding"])


def test_malformed_json_is_a_400_at_the_bundle(prepared):
    err = refusal(body=b'{"resourceType": "Bundle",')
    assert err.status == 400 and err.expression == ["Bundle"] and prepared == []


def test_an_empty_body_is_a_400(prepared):
    err = refusal(body=b"  ")
    assert err.status == 400 and err.expression == ["Bundle"]


def test_a_wrongly_typed_element_is_refused_before_prepare_reads_it(prepared):
    body = {"resourceType": "Bundle", "type": "message", "entry": [{"resource": "MessageHeader"}]}
    err = refusal(body=json.dumps(body).encode())
    assert err.status == 400 and err.expression == ["Bundle.entry[0].resource"] and prepared == []


@pytest.mark.parametrize("content_type", ["application/fhir+xml", "text/plain", None])
def test_bodies_other_than_json_are_415(prepared, content_type):
    assert refusal(content_type=content_type).status == 415


@pytest.mark.parametrize(
    ("resource_type", "operation"), [("Bundle", "$prepare"), (None, "$validate"), (None, "$process-message")]
)
def test_other_operations_are_not_ours(prepared, resource_type, operation):
    assert call(resource_type=resource_type, operation=operation) is None
    assert prepared == []


# ---------------------------------------------------------------- the CapabilityStatement


def capability_response(**rest) -> ProxyResponse:
    cs = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", **rest}]}
    return ProxyResponse.from_resource(200, cs)


def listed(response: ProxyResponse) -> list[dict]:
    ctx = request_context("capabilities", "GET")
    EpsPrepare(FakeRedis()).fhirplug_response(ctx=ctx, response=response)
    return response.resource["rest"][0].get("operation", [])


def test_metadata_lists_prepare_as_a_system_operation():
    assert listed(capability_response()) == [CAPABILITY]


def test_metadata_keeps_the_stores_operations_and_lists_prepare_once():
    other = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
    response = capability_response(operation=[other])
    assert listed(response) == [other, CAPABILITY]
    assert listed(response) == [other, CAPABILITY]


def test_other_answers_are_left_alone():
    response = ProxyResponse.from_resource(200, {"resourceType": "Patient", "id": "1"})
    EpsPrepare(FakeRedis()).fhirplug_response(
        ctx=request_context("read", "GET", "Patient", "1"), response=response
    )
    assert response.resource == {"resourceType": "Patient", "id": "1"}


# ---------------------------------------------------------------- through the app


def app_client(store: FakeStore):
    settings = Settings(public_base_url=PUBLIC_BASE, plugins=list(DEFAULT_PLUGINS), auth=False)
    return create_app(settings, store=store, redis=FakeRedis()).test_client()


def test_through_the_app_the_answer_never_asks_the_store(prepared):
    store = FakeStore()
    r = app_client(store).post("/fhir/$prepare", data=json.dumps(MESSAGE), content_type=FHIR_JSON)
    assert r.status_code == 200 and r.json["resourceType"] == "Parameters"
    assert r.headers["X-Request-ID"]
    assert store.calls == []


def test_through_the_app_a_gzip_body_is_read(prepared):
    r = app_client(FakeStore()).post(
        "/fhir/$prepare",
        data=gzip.compress(json.dumps(MESSAGE).encode()),
        headers={"Content-Type": FHIR_JSON, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200 and prepared == [(MESSAGE, HashAlgorithm.RS256)]


def test_through_the_app_a_refusal_is_an_operation_outcome(prepared):
    r = app_client(FakeStore()).post("/fhir/$prepare", data=b"{", content_type=FHIR_JSON)
    assert r.status_code == 400
    assert r.json["resourceType"] == "OperationOutcome" and r.json["issue"][0]["expression"] == ["Bundle"]


def test_through_the_app_metadata_lists_the_operation():
    store = FakeStore(body={"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]})
    r = app_client(store).get("/fhir/metadata")
    assert CAPABILITY in r.json["rest"][0]["operation"]
