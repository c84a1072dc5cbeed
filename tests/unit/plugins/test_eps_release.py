"""Task/$release served by the proxy: who may call it, the body, which identity each kind of
release acts as, the answer's form, and the CapabilityStatement. The release rules themselves
are replaced by recorders here (they are tested in tests/unit/eps/test_release.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from eps import release as rules
from plugins import eps_release as plugin_module
from plugins.eps_release import CAPABILITY, EpsRelease
from proxy.config import DEFAULT_PLUGINS
from proxy.context import Client
from proxy.errors import FhirError
from proxy.response import ProxyResponse
from proxy.store_caller import caller_of
from tests.support.eps import example, new_short_form_id
from tests.support.plugin_context import request_context

TILL = Client("till-1", "VNE51", "dispenser")
FHIR_JSON = "application/fhir+json"
NOMINATED = example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json")
MESSAGE = {"resourceType": "Bundle", "id": "7", "type": "message", "identifier": {"value": "m-1"}}


@pytest.fixture
def released(monkeypatch):
    """The rules replaced: each records (kind, the store identity it was given)."""
    calls: list[tuple[str, str | None]] = []

    def nominated(store, request, *, now, client_id=None):
        calls.append(("nominated", store._caller))
        return rules.Released(messages=[MESSAGE], tasks=[{"id": "1"}])

    def patient(store, request, *, now, client_id=None):
        calls.append(("patient", store._caller))
        if request.short_id == "gone":
            raise rules.ReleaseRefused(rules.not_found())
        return rules.Released(messages=[MESSAGE], tasks=[{"id": "1"}])

    monkeypatch.setattr(plugin_module.rules, "release_nominated", nominated)
    monkeypatch.setattr(plugin_module.rules, "release_patient", patient)
    monkeypatch.setattr(plugin_module.rules, "write_audit", lambda *a, **k: calls.append(("audit", None)))
    return calls


def call(
    body: object = NOMINATED,
    *,
    client: Client = TILL,
    method: str = "POST",
    resource_type: str | None = "Task",
    operation: str = "$release",
    query: list[tuple[str, str]] | None = None,
):
    ctx = request_context("operation", method, resource_type, client=client, query=query)
    ctx.interaction = replace(ctx.interaction, operation=operation)
    ctx.request = replace(ctx.request, content_type=FHIR_JSON)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ctx.body_source = lambda: raw
    return EpsRelease("https://proxy.test/fhir").fhirplug_request(ctx=ctx)


def refusal(**kwargs) -> FhirError:
    with pytest.raises(FhirError) as raised:
        call(**kwargs)
    return raised.value


def test_a_nominated_release_acts_as_the_pharmacy_and_answers_a_searchset(released):
    answer = call()
    assert isinstance(answer, ProxyResponse) and answer.status == 200
    assert answer.resource["type"] == "searchset" and answer.resource["entry"][0]["resource"] == MESSAGE
    assert answer.resource["link"] == [{"relation": "self", "url": "https://proxy.test/fhir/Task/$release"}]
    assert released == [("nominated", caller_of("dispenser", "VNE51")), ("audit", None)]


def test_a_patient_release_looks_up_as_the_proxy_itself(released):
    body = example("spec__dispense__Patient-Request-Release-200_OK.json")
    assert call(body).status == 200
    assert released == [("patient", None)]  # None: the proxy's own (admin) identity


def test_eps_refusals_are_answered_with_their_outcome(released, monkeypatch):
    monkeypatch.setattr(
        plugin_module.rules, "parse", lambda *a: rules.ReleaseRequest(rules.Kind.PATIENT, "VNE51", {}, "gone")
    )
    answer = call()
    assert (
        answer.status == 400
        and answer.resource["issue"][0]["details"]["coding"][0]["code"] == "RESOURCE_NOT_FOUND"
    )


def test_the_eps_shape_is_asked_for_in_the_url(released):
    answer = call(query=[("response-shape", "eps-parameters")])
    assert [p["name"] for p in answer.resource["parameter"]] == ["passedPrescriptions", "failedPrescriptions"]


def test_an_audit_that_cannot_be_written_does_not_undo_the_answer(released, monkeypatch, caplog):
    def fail(*a, **k):
        raise rules.AuditNotWritten(500)

    monkeypatch.setattr(plugin_module.rules, "write_audit", fail)
    assert call().status == 200
    assert "audit events not stored" in caplog.text


@pytest.mark.parametrize(
    "client",
    [Client("gp", "A83008", "prescriber"), Client("hub", "FA565", "hub"), Client("root", None, "admin")],
    ids=["prescriber", "hub", "admin"],
)
def test_only_dispensers_release(released, client):
    error = refusal(client=client)
    assert error.status == 403 and released == []


def test_release_takes_post_only(released):
    error = refusal(method="GET")
    assert error.status == 405 and error.headers == {"Allow": "POST"}


@pytest.mark.parametrize(
    "body, where",
    [(b"", "Parameters"), (b"{not json", "Parameters"), ({"resourceType": "Bundle"}, "Parameters")],
    ids=["empty", "not JSON", "not Parameters"],
)
def test_a_body_that_is_not_parameters_is_400(released, body, where):
    error = refusal(body=body)
    assert error.status == 400 and error.expression == [where]


def test_another_pharmacys_owner_is_403_before_anything_is_read(released):
    body = json.loads(json.dumps(NOMINATED))
    body["parameter"][0]["resource"]["identifier"][0]["value"] = "FCG71"
    assert refusal(body=body).status == 403 and released == []


@pytest.mark.parametrize(
    "resource_type, operation", [(None, "$release"), ("Task", "$validate"), ("MedicationRequest", "$release")]
)
def test_other_operations_are_not_served_here(released, resource_type, operation):
    assert call(resource_type=resource_type, operation=operation) is None


def test_a_short_form_id_reaches_the_rules_as_given(released, monkeypatch):
    seen = []
    original = rules.parse
    monkeypatch.setattr(plugin_module.rules, "parse", lambda *a: seen.append(original(*a)) or seen[-1])
    short_id = new_short_form_id()
    body = example("spec__dispense__Patient-Request-Release-200_OK.json")
    body["parameter"][0]["valueIdentifier"]["value"] = short_id
    call(body)
    assert seen[0].short_id == short_id


def test_the_capability_statement_lists_release_on_task():
    ctx = request_context("capabilities")
    cs = {
        "resourceType": "CapabilityStatement",
        "rest": [{"resource": [{"type": "Patient"}, {"type": "Task"}]}],
    }
    response = ProxyResponse.from_resource(200, cs)
    EpsRelease().fhirplug_response(ctx=ctx, response=response)
    assert response.resource["rest"][0]["resource"][1]["operation"] == [CAPABILITY]
    assert "operation" not in response.resource["rest"][0]["resource"][0]


def test_the_plugin_comes_before_tenancy_by_default():
    assert DEFAULT_PLUGINS.index("eps_release") < DEFAULT_PLUGINS.index("tenancy")
