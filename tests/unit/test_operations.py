"""proxy.operations: what plugins serving an operation themselves share."""

from __future__ import annotations

import pytest

from proxy.context import make_request_view
from proxy.errors import FhirError
from proxy.operations import advertise, json_body, require_post
from proxy.response import ProxyResponse
from tests.support.plugin_context import request_context

CAPABILITY = {"name": "release", "definition": "https://example.org/OperationDefinition/release"}


def posted(body: bytes, content_type: str = "application/fhir+json"):
    ctx = request_context("operation", "POST")
    ctx.request = make_request_view("POST", "/fhir/$x", "$x", [], {}, content_type, "10.0.0.1")
    ctx.body_source = lambda: body
    return ctx


def test_only_post_is_served():
    with pytest.raises(FhirError) as raised:
        require_post(request_context("operation", "GET"), "$prepare")
    assert raised.value.status == 405 and raised.value.headers == {"Allow": "POST"}
    require_post(request_context("operation", "POST"), "$prepare")


def test_a_body_is_parsed_like_every_other():
    assert json_body(posted(b'{"resourceType": "Parameters"}'), "Parameters", "x") == {
        "resourceType": "Parameters"
    }


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "application/fhir+json", 400),
        (b"{", "application/fhir+json", 400),
        (b"<x/>", "application/fhir+xml", 415),
    ],
)
def test_a_missing_broken_or_xml_body_is_refused_at_the_root(body, content_type, status):
    with pytest.raises(FhirError) as raised:
        json_body(posted(body, content_type), "Parameters", "needs a Parameters body")
    assert raised.value.status == status
    if status == 400:
        assert raised.value.expression == ["Parameters"]


def capabilities() -> ProxyResponse:
    return ProxyResponse.from_resource(
        200, {"resourceType": "CapabilityStatement", "rest": [{"resource": [{"type": "Task"}]}]}
    )


def test_an_operation_is_listed_on_the_system_or_on_its_type_once():
    response = capabilities()
    advertise(response, CAPABILITY)
    advertise(response, CAPABILITY)
    assert response.resource["rest"][0]["operation"] == [CAPABILITY]
    advertise(response, CAPABILITY, on_type="Task")
    assert response.resource["rest"][0]["resource"][0]["operation"] == [CAPABILITY]


def test_anything_but_a_capability_statement_is_left_alone():
    response = ProxyResponse.from_resource(200, {"resourceType": "OperationOutcome", "issue": []})
    advertise(response, CAPABILITY)
    assert "rest" not in response.resource
