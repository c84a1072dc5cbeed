"""PATCH of any resource type is applied by the proxy and judged as the update it amounts to
(issue 21): HL7's FHIRPath Patch cases through the proxy for a Patient and a Task, and the rules
after the patch see its result (care-access reader labels follow a patched performer)."""

from __future__ import annotations

import copy
import html
import json
import re
import uuid

import pytest

from fhirpatch.json_values import json_equal
from tests.support.hl7_test_cases import fhirpath_patch_cases

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
READER = "https://fhirplug.org/fhir/CodeSystem/reader"
CASES = fhirpath_patch_cases()
SERVER_SET = ("id", "meta", "text")  # what the store sets on every write; compared apart


def _xhtml(div: str) -> str:
    return re.sub(r"\s+", "", html.unescape(div))


def _content(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in SERVER_SET}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hl7_fhirpath_patch_case_on_a_patient_through_the_proxy(stack, http, case):
    pid = f"hl7-{uuid.uuid4().hex[:16]}"
    body = {**copy.deepcopy(case.input), "id": pid}
    for ref in re.findall(r'"reference": "Organization/([A-Za-z0-9.-]+)"', json.dumps(body)):
        org = {"resourceType": "Organization", "id": ref}  # the case's references must resolve
        assert http.put(f"{stack.fhir}/Organization/{ref}", json=org, headers=FHIR_JSON).ok
    r = http.put(f"{stack.fhir}/Patient/{pid}", json=body, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    stored = r.json()
    r = http.patch(f"{stack.fhir}/Patient/{pid}", json=case.patch, headers=FHIR_JSON)
    if case.error is not None:
        assert r.status_code == 422, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == ["Parameters.parameter[0]"]  # ours, not HAPI's
        assert http.get(f"{stack.fhir}/Patient/{pid}").json()["meta"]["versionId"] == "1"
        return
    assert r.status_code == 200, r.text
    now = http.get(f"{stack.fhir}/Patient/{pid}").json()
    expected = {**case.output, "id": pid}
    assert json_equal(_content(now), _content(expected)), case.name
    if "text" in case.output:  # the store writes the XHTML its own way (&quot; for ", spacing)
        assert _xhtml(now["text"]["div"]) == _xhtml(case.output["text"]["div"])
    changed = not json_equal(_content(stored), _content(now)) or stored.get("text") != now.get("text")
    assert now["meta"]["versionId"] == ("2" if changed else now["meta"]["versionId"])


def _task(pid: str) -> dict:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{pid}"},
        "identifier": [
            {"system": "https://example.org/t", "value": "1"},
            {"system": "https://example.org/t", "value": "2"},
        ],
        "note": [{"text": "a"}, {"text": "b"}, {"text": "c"}],
    }


TASK_CASES = [
    # (operation parts, what the Task holds after)
    (
        [
            ("type", "valueCode", "replace"),
            ("path", "valueString", "Task.note.where(text='b').text"),
            ("value", "valueString", "B"),
        ],
        lambda t: [n["text"] for n in t["note"]] == ["a", "B", "c"],
    ),
    (
        [
            ("type", "valueCode", "move"),
            ("path", "valueString", "Task.note"),
            ("source", "valueInteger", 2),
            ("destination", "valueInteger", 0),
        ],
        lambda t: [n["text"] for n in t["note"]] == ["c", "a", "b"],
    ),
    (
        [("type", "valueCode", "delete"), ("path", "valueString", "Task.note.where(text='a')")],
        lambda t: [n["text"] for n in t["note"]] == ["b", "c"],
    ),
    (
        [
            ("type", "valueCode", "insert"),
            ("path", "valueString", "Task.note"),
            ("index", "valueInteger", 1),
            ("value", "valueAnnotation", {"text": "x"}),
        ],
        lambda t: [n["text"] for n in t["note"]] == ["a", "x", "b", "c"],
    ),
    (
        [
            ("type", "valueCode", "add"),
            ("path", "valueString", "Task"),
            ("name", "valueString", "businessStatus"),
            ("value", "valueCodeableConcept", {"text": "d"}),
        ],
        lambda t: t["businessStatus"] == {"text": "d"},
    ),
]


@pytest.mark.parametrize(
    "parts,holds", TASK_CASES, ids=["where-replace", "move", "where-delete", "insert", "add"]
)
def test_fhirpath_patch_of_a_task_through_the_proxy(stack, http, parts, holds):
    pid = f"tp-{uuid.uuid4().hex[:16]}"
    assert http.put(
        f"{stack.fhir}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=FHIR_JSON
    ).ok
    r = http.post(f"{stack.fhir}/Task", json=_task(pid), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    patch = {
        "resourceType": "Parameters",
        "parameter": [{"name": "operation", "part": [{"name": n, k: v} for n, k, v in parts]}],
    }
    r = http.patch(f"{stack.fhir}/Task/{tid}", json=patch, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert holds(http.get(f"{stack.fhir}/Task/{tid}").json())


def test_a_patch_that_names_a_new_pharmacy_gives_it_the_reader_label(stack):
    """The care-access rule judges the patched request: the pharmacy a PATCH names reads it (a
    patch the store applied would have kept the labels the request had; an update keeps the
    readers it had, by the rule's design, so the first pharmacy still reads it)."""
    prescriber = stack.session(client=stack.client("patch-p", "spoke", "FPP01"))
    first = stack.session(client=stack.client("patch-d1", "spoke", "FPD01"))
    second = stack.session(client=stack.client("patch-d2", "spoke", "FPD02"))
    r = prescriber.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    mr = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "paracetamol"},
        "subject": {"reference": f"Patient/{pid}"},
        "dispenseRequest": {"performer": {"identifier": {"system": ODS, "value": "FPD01"}}},
    }
    r = prescriber.post(f"{stack.fhir}/MedicationRequest", json=mr, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    url = f"{stack.fhir}/MedicationRequest/{mid}"
    assert first.get(url).status_code == 200 and second.get(url).status_code == 404
    r = prescriber.patch(
        url,
        json=[{"op": "replace", "path": "/dispenseRequest/performer/identifier/value", "value": "FPD02"}],
        headers={"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 200, r.text
    assert second.get(url).status_code == 200
    assert second.get(url).json()["dispenseRequest"]["performer"]["identifier"]["value"] == "FPD02"
    labels = stack.session().get(url).json()["meta"]["security"]
    assert {"system": READER, "code": "FPD02"} in labels


def test_a_patch_of_meta_is_refused_for_any_type(stack, http):
    r = http.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    pid = r.json()["id"]
    r = http.patch(
        f"{stack.fhir}/Patient/{pid}",
        json=[{"op": "add", "path": "/meta/tag", "value": [{"code": "x"}]}],
        headers={"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["issue"][0]["expression"] == ["Patient.meta"]


def test_a_conditional_patch_matching_two_is_412(stack, http):
    family = f"Twin{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        http.post(
            f"{stack.fhir}/Patient",
            json={"resourceType": "Patient", "name": [{"family": family}]},
            headers=FHIR_JSON,
        )
    r = http.patch(
        f"{stack.fhir}/Patient?family={family}",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"},
    )
    assert r.status_code == 412, r.text
