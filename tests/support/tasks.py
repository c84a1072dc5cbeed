"""A Task to judge and to patch, and the builders of patches, for the fhirpatch and Task tests."""

from __future__ import annotations

import copy

import pytest

from fhirpatch import apply_patch
from proxy.errors import FhirError

JSON_PATCH = "application/json-patch+json"
FHIR_JSON = "application/fhir+json"


def task(**over):
    base = {
        "resourceType": "Task",
        "id": "t1",
        "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00Z"},
        "identifier": [{"system": "https://example.org/task", "value": "abc"}],
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/p1"},
        "requester": {"reference": "Organization/spoke"},
        "owner": {"reference": "Organization/hub"},
        "authoredOn": "2024-05-01T10:00:00Z",
        "statusReason": {"text": "first"},
        "note": [{"text": "please dispense"}],
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def three_notes():
    return task(note=[{"text": "a"}, {"text": "b"}, {"text": "c"}])


# FHIRPath Patch building blocks


def op(kind, path, **parts):
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "name":
            part.append({"name": "name", "valueString": value})
        elif name in ("index", "source", "destination"):
            part.append({"name": name, "valueInteger": value})
        else:  # value=("valueCode", "accepted") or value=[nested parts]
            if isinstance(value, list):
                part.append({"name": "value", "part": value})
            else:
                part.append({"name": "value", value[0]: value[1]})
    return {"name": "operation", "part": part}


def params(*ops):
    return {"resourceType": "Parameters", "parameter": list(ops)}


def patched(resource, patch, content_type):
    """apply_patch, asserting the input resource and the patch are left as they were."""
    before, patch_before = copy.deepcopy(resource), copy.deepcopy(patch)
    result = apply_patch(resource, patch, content_type)
    assert resource == before
    assert patch == patch_before
    assert result is not resource
    return result


def refused(resource, patch, content_type):
    before = copy.deepcopy(resource)
    with pytest.raises(FhirError) as caught:
        apply_patch(resource, patch, content_type)
    assert resource == before
    return caught.value


DISPENSE_REF = {"reference": "MedicationDispense/md1"}
DISPENSED = {"coding": [{"system": "https://example.org/output", "code": "dispensed"}], "text": "dispensed"}

# Each case: (name, JSON Patch, FHIRPath Patch, what changes in the Task)
EQUIVALENT = [
    (
        "replace status",
        [{"op": "replace", "path": "/status", "value": "accepted"}],
        params(op("replace", "Task.status", value=("valueCode", "accepted"))),
        {"status": "accepted"},
    ),
    (
        "add businessStatus",
        [{"op": "add", "path": "/businessStatus", "value": {"text": "picking"}}],
        params(op("add", "Task", name="businessStatus", value=("valueCodeableConcept", {"text": "picking"}))),
        {"businessStatus": {"text": "picking"}},
    ),
    (
        "add an output (type + value)",
        [{"op": "add", "path": "/output", "value": [{"type": DISPENSED, "valueReference": DISPENSE_REF}]}],
        params(
            op(
                "add",
                "Task",
                name="output",
                value=[
                    {"name": "type", "valueCodeableConcept": DISPENSED},
                    {"name": "value", "valueReference": DISPENSE_REF},
                ],
            )
        ),
        {"output": [{"type": DISPENSED, "valueReference": DISPENSE_REF}]},
    ),
    (
        "add a note",
        [{"op": "add", "path": "/note/-", "value": {"text": "labelled", "time": "2024-05-01T12:00:00Z"}}],
        params(
            op(
                "add",
                "Task",
                name="note",
                value=("valueAnnotation", {"text": "labelled", "time": "2024-05-01T12:00:00Z"}),
            )
        ),
        {"note": [{"text": "please dispense"}, {"text": "labelled", "time": "2024-05-01T12:00:00Z"}]},
    ),
    (
        "delete statusReason",
        [{"op": "remove", "path": "/statusReason"}],
        params(op("delete", "Task.statusReason")),
        {"statusReason": None},
    ),
    (
        "insert a note first",
        [{"op": "add", "path": "/note/0", "value": {"text": "urgent"}}],
        params(op("insert", "Task.note", index=0, value=("valueAnnotation", {"text": "urgent"}))),
        {"note": [{"text": "urgent"}, {"text": "please dispense"}]},
    ),
    (
        "replace a nested element",
        [{"op": "replace", "path": "/statusReason/text", "value": "second"}],
        params(op("replace", "Task.statusReason.text", value=("valueString", "second"))),
        {"statusReason": {"text": "second"}},
    ),
]
