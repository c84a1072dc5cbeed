"""The conversion client: the store's answers read as JSON, or as the caller's 400 with every issue."""

from __future__ import annotations

import io
import json

import pytest
import urllib3

from proxy.errors import FhirError
from proxy.store_caller import CALLER_KEY
from proxy.xml_convert import CONVERT_PATH, XmlConverter, XmlRefused


class ConvertingStore:
    """Answers the conversion endpoint with a canned status and body; records the calls."""

    base_url = "http://store.internal/fhir"

    def __init__(self, status: int, body: bytes):
        self.status, self.body = status, body
        self.calls: list[tuple] = []

    def send(self, method, path, query, headers, body):
        self.calls.append((method, path, query, headers, body))
        return urllib3.HTTPResponse(body=io.BytesIO(self.body), status=self.status, preload_content=False)


def outcome(*issues: dict) -> bytes:
    return json.dumps({"resourceType": "OperationOutcome", "issue": list(issues)}).encode()


def test_xml_goes_to_the_convert_endpoint_as_the_proxy_and_comes_back_as_json():
    store = ConvertingStore(200, b'{"resourceType":"Patient"}')
    out = XmlConverter(store).to_json(b"<Patient/>", "text/xml; charset=ISO-8859-1")
    assert out == b'{"resourceType":"Patient"}'
    ((method, path, _, headers, body),) = store.calls
    assert (method, path, body) == ("POST", CONVERT_PATH, b"<Patient/>")
    assert headers["content-type"] == "text/xml; charset=ISO-8859-1"  # the charset travels
    assert headers[CALLER_KEY] == "admin;"


def test_a_malformed_document_is_400_with_every_issue_its_expression_and_location():
    body = outcome(
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": "Unknown element 'foo'",
            "expression": ["Patient.foo"],
            "location": ["Line[2] Col[3]"],
        },
        {"severity": "error", "code": "value", "diagnostics": "bad date", "location": ["Line[3] Col[3]"]},
    )
    with pytest.raises(XmlRefused) as e:
        XmlConverter(ConvertingStore(422, body)).to_json(b"<Patient/>", "application/fhir+xml")
    err = e.value
    assert err.status == 400 and err.lossy
    resource = err.to_resource()
    assert resource["issue"][0]["expression"] == ["Patient.foo"]
    assert resource["issue"][0]["location"] == ["Line[2] Col[3]"]
    assert resource["issue"][1] == {
        "severity": "error",
        "code": "value",
        "diagnostics": "bad date",
        "location": ["Line[3] Col[3]"],
    }


def test_not_well_formed_is_not_lossy():
    with pytest.raises(XmlRefused) as e:
        XmlConverter(ConvertingStore(400, outcome({"diagnostics": "not well-formed"}))).to_json(b"<", None)
    assert e.value.status == 400 and not e.value.lossy


def test_an_unreadable_refusal_is_still_an_operation_outcome():
    with pytest.raises(XmlRefused) as e:
        XmlConverter(ConvertingStore(400, b"<html>oops</html>")).to_json(b"<", None)
    assert e.value.to_resource()["resourceType"] == "OperationOutcome"


def test_a_store_without_the_converter_is_415_saying_to_send_json():
    with pytest.raises(FhirError) as e:
        XmlConverter(ConvertingStore(404, b"{}")).to_json(b"<Patient/>", None)
    assert e.value.status == 415 and "application/fhir+json" in e.value.diagnostics


def test_a_failing_store_is_503_never_500():
    with pytest.raises(FhirError) as e:
        XmlConverter(ConvertingStore(500, b"boom")).to_json(b"<Patient/>", None)
    assert e.value.status == 503


def test_json_to_xml_asks_for_xml():
    store = ConvertingStore(200, b"<Patient/>")
    assert XmlConverter(store).to_xml(b'{"resourceType":"Patient"}') == b"<Patient/>"
    assert store.calls[0][3]["accept"] == "application/fhir+xml"


def test_a_store_that_does_not_answer_in_time_is_503_saying_nothing_was_stored():
    class Slow(ConvertingStore):
        def send(self, *args):
            raise FhirError.unavailable(
                "The FHIR store did not answer in time; a write may have been applied"
            )

    with pytest.raises(FhirError) as e:
        XmlConverter(Slow(200, b"")).to_json(b"<Patient/>", None)
    assert e.value.status == 503 and "nothing was stored" in e.value.diagnostics
    assert e.value.headers.get("Retry-After")
