"""The XML intake, in-process against a fake store: plugins see JSON, the store is sent JSON, and
the answer comes in the format asked for (the request's own, XML, when nothing is asked)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

import pytest
import urllib3

from proxy.app import create_app
from proxy.config import Settings
from proxy.hookspecs import hookimpl
from proxy.xml_convert import CONVERT_PATH
from proxy.xml_intake import answer_format
from tests.support.fake_store import BASE, PUBLIC_BASE

PATIENT_XML = b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
PATIENT_JSON = b'{"resourceType":"Patient","active":true}'
FHIR = "{http://hl7.org/fhir}"


class Store:
    """Converts PATIENT_XML (anything else is refused as the store would) and answers writes."""

    base_url = BASE

    def __init__(self, refuse_status: int = 400):
        self.calls: list[dict] = []
        self.refuse_status = refuse_status

    def send(self, method, path, query, headers, body):
        self.calls.append({"method": method, "path": path, "query": query, "headers": headers, "body": body})
        if path == CONVERT_PATH:
            if body == PATIENT_XML:
                return self._answer(200, PATIENT_JSON)
            issue = {"severity": "error", "code": "structure", "diagnostics": "not FHIR XML"}
            issue |= {"expression": ["Patient.foo"], "location": ["Line[1] Col[38]"]}
            return self._answer(
                self.refuse_status, json.dumps({"resourceType": "OperationOutcome", "issue": [issue]})
            )
        sent = (
            json.loads(body)
            if body and headers.get("content-type", "").startswith("application/fhir+json")
            else {}
        )
        if path.endswith("$validate"):
            return self._answer(200, '{"resourceType":"OperationOutcome","issue":[]}')
        return self._answer(201, json.dumps({**sent, "id": "1"}))

    @staticmethod
    def _answer(status, data):
        data = data.encode() if isinstance(data, str) else data
        headers = {"Content-Type": "application/fhir+json;charset=UTF-8"}
        return urllib3.HTTPResponse(
            body=io.BytesIO(data), status=status, preload_content=False, headers=headers
        )

    def ping(self):
        return True

    def upstream(self):
        return [c for c in self.calls if c["path"] != CONVERT_PATH]


class Seen:
    """Records what a configured plugin is shown: the Content-Type and the body."""

    def __init__(self):
        self.content_type = None
        self.body = None

    @hookimpl
    def fhirplug_request(self, ctx):
        self.content_type = ctx.request.content_type
        self.body = ctx.request_body()


def make(store=None):
    store, seen = store or Store(), Seen()
    app = create_app(Settings(public_base_url=PUBLIC_BASE, plugins=[], auth=False), [seen], store=store)
    return app.test_client(), store, seen


@pytest.mark.parametrize(
    "ctype", ["application/fhir+xml", "application/xml", "text/xml", "application/fhir+xml; charset=UTF-8"]
)
def test_plugins_see_json_and_the_store_is_sent_json(ctype):
    client, store, seen = make()
    r = client.post(
        "/fhir/Patient", data=PATIENT_XML, headers={"Content-Type": ctype, "Accept": "application/json"}
    )
    assert r.status_code == 201, r.data
    assert seen.content_type.startswith("application/fhir+json") and json.loads(seen.body)["active"] is True
    (sent,) = store.upstream()
    assert sent["headers"]["content-type"].startswith("application/fhir+json")
    assert json.loads(sent["body"]) == {"resourceType": "Patient", "active": True}
    convert = next(c for c in store.calls if c["path"] == CONVERT_PATH)
    assert convert["headers"]["content-type"] == ctype


def test_nothing_asked_is_answered_in_xml_from_the_json_the_store_gave():
    client, store, _ = make()
    r = client.post("/fhir/Patient", data=PATIENT_XML, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 201
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    assert ET.fromstring(r.data).find(f"{FHIR}active").get("value") == "true"
    (sent,) = store.upstream()
    assert sent["headers"]["accept"] == "application/fhir+json"  # the hooks judge JSON


def test_format_json_is_honoured_and_not_sent_on():
    client, store, _ = make()
    r = client.post("/fhir/Patient?_format=json", data=PATIENT_XML, headers={"Content-Type": "text/xml"})
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("application/fhir+json")


@pytest.mark.parametrize("status", [400, 422])
def test_an_unconvertible_write_is_400_with_location_in_the_callers_format(status):
    client, store, seen = make(Store(status))
    r = client.post("/fhir/Patient", data=b"<Patient><foo/></Patient>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/fhir+xml")
    issue = ET.fromstring(r.data).find(f"{FHIR}issue")
    assert issue.find(f"{FHIR}location").get("value") == "Line[1] Col[38]"
    assert issue.find(f"{FHIR}expression").get("value") == "Patient.foo"
    assert store.upstream() == [] and seen.body is None  # nothing stored, no plugin shown the XML


def test_validate_sends_the_callers_xml_to_the_store_so_lines_are_its_own():
    client, store, seen = make()
    r = client.post(
        "/fhir/Patient/$validate",
        data=PATIENT_XML,
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 200, r.data
    assert json.loads(seen.body) == {"resourceType": "Patient", "active": True}
    (sent,) = store.upstream()
    assert sent["body"] == PATIENT_XML and sent["headers"]["content-type"] == "application/fhir+xml"


def test_validate_of_xml_fhir_cannot_hold_goes_to_the_validator_as_sent():
    client, store, seen = make(Store(422))
    doc = b'<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>'
    r = client.post("/fhir/Patient/$validate", data=doc, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 200, r.data
    (sent,) = store.upstream()
    assert sent["body"] == doc


def test_validate_of_malformed_xml_is_400():
    client, store, _ = make(Store(400))
    r = client.post("/fhir/Patient/$validate", data=b"<Patient", headers={"Content-Type": "text/xml"})
    assert r.status_code == 400 and store.upstream() == []


def test_json_and_reads_never_go_to_the_converter():
    client, store, _ = make()
    client.post("/fhir/Patient", json={"resourceType": "Patient"})
    client.get("/fhir/Patient/1", headers={"Content-Type": "application/fhir+xml"})
    assert all(c["path"] != CONVERT_PATH for c in store.calls)


@pytest.mark.parametrize(
    "fmt,accept,want",
    [
        (None, None, "xml"),
        (None, "*/*", "xml"),
        (None, "application/fhir+json", "json"),
        (None, "application/fhir+xml;q=0.9, application/json;q=0.8", "xml"),
        (None, "application/fhir+json;q=0, text/xml", "xml"),
        ("json", "application/fhir+xml", "json"),
        ("application/fhir+xml", None, "xml"),
        ("ttl", None, None),
    ],
)
def test_answer_format(fmt, accept, want):
    assert answer_format(fmt, accept, "xml") == want
