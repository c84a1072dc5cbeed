"""FHIR messaging rules: the request envelope, the response message, where async answers may go."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from eps import messaging
from eps.events import EventResult
from proxy.errors import FhirError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BASE = "https://gp.example/fhir"


def message(**header) -> dict:
    return {
        "resourceType": "Bundle",
        "id": "m-1",
        "type": "message",
        "entry": [
            {
                "resource": {
                    "resourceType": "MessageHeader",
                    "eventCoding": {"system": "https://fhir.nhs.uk/CodeSystem/message-event", "code": "x"},
                    "source": {"endpoint": BASE},
                    **header,
                }
            }
        ],
    }


def refused(body) -> FhirError:
    with pytest.raises(FhirError) as raised:
        messaging.read(body)
    return raised.value


def test_a_message_is_read_with_its_event_and_id():
    request = messaging.read(message())
    assert (request.event, request.message_id) == ("x", "m-1")


def test_the_message_id_is_bundle_id_or_else_message_header_id():
    body = message(id="h-1")
    del body["id"]
    assert messaging.read(body).message_id == "h-1"


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        (lambda b: b.update(type="transaction"), "Bundle.type"),
        (lambda b: b.update(entry=[]), "Bundle.entry[0].resource"),
        (lambda b: b["entry"][0]["resource"].pop("eventCoding"), "MessageHeader.eventCoding.code"),
        (lambda b: b.pop("id"), "Bundle.id"),
        (lambda b: b.update(id="not an id!"), "Bundle.id"),
        (
            lambda b: b["entry"][0]["resource"]["eventCoding"].update(system="urn:x"),
            "MessageHeader.eventCoding.system",
        ),
    ],
)
def test_a_bad_envelope_is_400_naming_the_element(change, expression):
    body = message()
    change(body)
    error = refused(body)
    assert error.status == 400 and error.expression == [expression]


def test_the_digest_ignores_key_order_and_number_spelling():
    assert messaging.digest({"a": 1, "b": Decimal("2.0")}) == messaging.digest({"b": 2, "a": 1})
    assert messaging.digest({"a": 1}) != messaging.digest({"a": 2})


def test_the_response_message_names_the_request_and_is_the_same_for_a_resend():
    request = messaging.read(message())
    one = messaging.response_message(request, EventResult(), key="A/m-1", now=NOW, source="https://us/fhir")
    two = messaging.response_message(request, EventResult(), key="A/m-1", now=NOW, source="https://us/fhir")
    assert one == two and one["type"] == "message"
    header = one["entry"][0]["resource"]
    assert header["response"] == {"identifier": "m-1", "code": "ok"}
    assert header["source"] == {"endpoint": "https://us/fhir"}
    assert header["destination"][0]["endpoint"] == BASE


def test_an_outcome_is_the_focus_of_the_response():
    request = messaging.read(message())
    error = FhirError(400, "bad", ["Provenance.signature.data"])
    response = messaging.response_message(request, messaging.fatal(error), key="k", now=NOW, source="s")
    header, outcome = (e["resource"] for e in response["entry"])
    assert header["response"]["code"] == "fatal-error"
    assert header["focus"] == [{"reference": response["entry"][1]["fullUrl"]}]
    assert outcome["issue"][0]["expression"] == ["Provenance.signature.data"]
    assert messaging.outcome_of(response)["issue"][0]["diagnostics"] == "bad"


def test_an_ok_response_reads_as_epss_informational_outcome():
    request = messaging.read(message())
    response = messaging.response_message(request, EventResult(), key="k", now=NOW, source="s")
    assert messaging.outcome_of(response)["issue"] == [{"severity": "information", "code": "informational"}]


def test_the_async_target_is_the_response_url_or_the_source_endpoint():
    request = messaging.read(message())
    assert messaging.response_target(request, None) == (
        BASE + "/$process-message",
        "MessageHeader.source.endpoint",
    )
    assert messaging.response_target(request, "https://x/y") == ("https://x/y", "response-url")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (BASE + "/$process-message", "$process-message?async=true"),
        (BASE + "/$process-message?async=false&x=1", "$process-message?x=1&async=true"),
        (BASE, "?async=true"),
    ],
)
def test_a_url_under_the_partners_base_becomes_a_path(url, path):
    assert messaging.path_under(url, BASE, "response-url") == path


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://gp.example/admin",
        "https://gp.example/fhirx/$process-message",
        "https://gp.example/fhir/../admin",
        "https://gp.example/fhir/%2e%2e/admin",
        "https://gp.example:444/fhir/x",
        "http://gp.example/fhir/x",
        "https://user@gp.example/fhir/x",
        "https://gp.example.evil/fhir/x",
        "file:///etc/passwd",
        "https://gp.example/fhir/x#y",
    ],
)
def test_anything_else_is_refused(url):
    with pytest.raises(FhirError) as raised:
        messaging.path_under(url, BASE, "response-url")
    assert raised.value.status == 400 and raised.value.expression == ["response-url"]
