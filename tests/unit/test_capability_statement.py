"""proxy/capability_statement.py: the store's CapabilityStatement rewritten as fhirplug's."""

from __future__ import annotations

import copy

from proxy.capability_statement import PATCH_FORMATS, truthful

HAPI = {
    "resourceType": "CapabilityStatement",
    "name": "RestServer",
    "software": {"name": "HAPI FHIR Server", "version": "8.8.0"},
    "implementation": {"description": "HAPI FHIR", "url": "http://127.0.0.1:8080/fhir"},
    "format": ["application/fhir+xml", "xml", "application/fhir+json", "json", "application/x-turtle", "ttl"],
    "patchFormat": [
        "application/fhir+json",
        "application/fhir+xml",
        "application/json-patch+json",
        "application/xml-patch+xml",
    ],
    "rest": [
        {
            "mode": "server",
            "operation": [
                {"name": "expunge", "definition": "http://127.0.0.1:8080/fhir/OperationDefinition/expunge"},
                {"name": "meta", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-meta"},
                {"name": "perform-reindexing-pass"},
            ],
            "resource": [
                {
                    "type": "Patient",
                    "operation": [
                        {"name": "validate"},
                        {"name": "everything"},
                        {"name": "meta-add"},
                        {"name": "hapi.fhir.merge"},
                    ],
                },
                {"type": "ImplementationGuide", "operation": [{"name": "install"}, {"name": "expunge"}]},
                {"type": "Basic", "operation": [{"name": "expunge"}]},
            ],
        }
    ],
}


def rewritten() -> dict:
    return truthful(copy.deepcopy(HAPI), "https://fhir.example.org/fhir")


def test_it_names_fhirplug_and_the_store_behind_it():
    cs = rewritten()
    assert cs["software"]["name"] == "fhirplug" and cs["name"] == "fhirplug"
    assert "HAPI FHIR Server 8.8.0" in cs["implementation"]["description"]
    assert cs["implementation"]["url"] == "https://fhir.example.org/fhir"
    assert "HAPI" in cs["text"]["div"] and cs["text"]["div"].startswith("<div xmlns=")


def test_formats_are_what_the_proxy_answers_and_accepts():
    cs = rewritten()
    assert "ttl" not in cs["format"] and "application/x-turtle" not in cs["format"]
    assert {"application/fhir+json", "application/fhir+xml"} <= set(cs["format"])
    assert cs["patchFormat"] == PATCH_FORMATS and "application/xml-patch+xml" not in cs["patchFormat"]


def test_only_the_store_operations_clients_may_reach_stay():
    cs = rewritten()
    rest = cs["rest"][0]
    assert "operation" not in rest  # every store system operation is administrative
    by_type = {r["type"]: [o["name"] for o in r.get("operation", [])] for r in rest["resource"]}
    assert by_type == {"Patient": ["validate"], "ImplementationGuide": ["install"], "Basic": []}


def test_without_a_public_base_the_address_asked_stays():
    cs = truthful(copy.deepcopy(HAPI), None)
    assert cs["implementation"]["url"] == "http://127.0.0.1:8080/fhir"
