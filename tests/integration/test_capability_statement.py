"""GET /fhir/metadata on the real stack tells what fhirplug does, in JSON and XML alike, and
every operation it lists is one a client can reach."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hubspoke.identifiers import NHS_NUMBER_SYSTEM

FHIR = "{http://hl7.org/fhir}"
REFUSED_BY_THE_PROXY = {"expunge", "meta-add", "meta-delete", "reindex", "hapi.fhir.merge", "everything"}


def operations(cs: dict) -> set[tuple[str | None, str]]:
    rest = cs["rest"][0]
    ops = {(None, o["name"]) for o in rest.get("operation", [])}
    for r in rest["resource"]:
        ops |= {(r["type"], o["name"]) for o in r.get("operation", [])}
    return ops


@pytest.fixture(scope="module")
def cs(stack) -> dict:
    import requests

    return requests.get(
        f"{stack.fhir}/metadata", headers={"Accept": "application/fhir+json"}, timeout=60
    ).json()


def test_it_is_fhirplugs_statement(cs):
    assert cs["software"]["name"] == "fhirplug"
    assert "ttl" not in cs["format"] and "application/xml-patch+xml" not in cs["patchFormat"]
    assert cs["rest"][0]["security"]["extension"][0]["extension"][0]["url"] == "token"


def test_no_operation_the_proxy_refuses_is_listed_and_its_own_are(cs):
    names = {name for _, name in operations(cs)}
    assert not names & REFUSED_BY_THE_PROXY
    assert {(None, "prepare"), (None, "process-message"), ("Task", "release")} <= operations(cs)
    assert ("Patient", "validate") in operations(cs)


def test_xml_says_what_json_says(stack, anon, cs):
    for accept in ({"_format": "xml"}, None):
        r = anon.get(
            f"{stack.fhir}/metadata",
            params=accept,
            headers=None if accept else {"Accept": "application/fhir+xml"},
            timeout=60,
        )
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/fhir+xml")
        root = ET.fromstring(r.content)
        assert root.find(f"{FHIR}software/{FHIR}name").get("value") == "fhirplug"
        rest = root.find(f"{FHIR}rest")
        xml_ops = {(None, o.find(f"{FHIR}name").get("value")) for o in rest.findall(f"{FHIR}operation")}
        for res in rest.findall(f"{FHIR}resource"):
            rtype = res.find(f"{FHIR}type").get("value")
            xml_ops |= {(rtype, o.find(f"{FHIR}name").get("value")) for o in res.findall(f"{FHIR}operation")}
        assert xml_ops == operations(cs)


def test_a_format_the_proxy_does_not_serve_is_406_at_the_parameter(stack, anon):
    r = anon.get(f"{stack.fhir}/metadata", params={"_format": "ttl"}, timeout=60)
    assert r.status_code == 406
    assert r.json()["issue"][0]["expression"] == ["_format"]


def test_a_listed_type_operation_is_reachable_by_a_tenant(stack):
    spoke = stack.session(client=stack.client("cs-spoke", "spoke", "VNE51"))
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9449304130"}],
    }
    r = spoke.post(
        f"{stack.fhir}/Patient/$validate", json=patient, headers={"Content-Type": "application/fhir+json"}
    )
    assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"
    refused = spoke.post(f"{stack.fhir}/Patient/$expunge", json={"resourceType": "Parameters"})
    assert refused.status_code == 403
