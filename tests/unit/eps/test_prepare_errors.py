"""What EPS refuses, we refuse: FhirError(400) with EPS's words at the offending element."""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from eps.prepare import prepare
from proxy.errors import FhirError

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
REQUESTS = [
    "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Request-200_OK.json",
    "secondary-care__community__repeat-dispensing__nominated-pharmacy__clinical-practitioner__"
    "multiple-medication-requests__prescriber-endorsed__1-Prepare-Request-200_OK.json",
    "spec__prepare__eRD-primary-example-req.json",
]
NOW = datetime(2024, 12, 9, 11, 50, 4, tzinfo=UTC)
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")


def bundle(index: int = 0) -> dict:
    return json.loads((EXAMPLES / REQUESTS[index]).read_bytes(), parse_float=Decimal)


def of_type(message: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == resource_type]


def drop(resource_type: str):
    def change(message: dict) -> None:
        message["entry"] = [e for e in message["entry"] if e["resource"]["resourceType"] != resource_type]

    return change


def refused(message: object) -> FhirError:
    with pytest.raises(FhirError) as caught:
        prepare(message, now=NOW)
    assert caught.value.status == 400
    return caught.value


def set_event(code):
    def change(message):
        of_type(message, "MessageHeader")[0]["eventCoding"]["code"] = code

    return change


def mixed_course(message):
    of_type(message, "MedicationRequest")[1]["courseOfTherapyType"]["coding"][0]["code"] = (
        "continuous-repeat-dispensing"
    )


def bad_short_form(message):
    for request in of_type(message, "MedicationRequest"):
        request["groupIdentifier"]["value"] = "24F5DA-A83008-7EFE6Y"


def bad_nhs_number(message):
    of_type(message, "Patient")[0]["identifier"][0]["value"] = "9449305553"


def dangling_requester(message):
    for request in of_type(message, "MedicationRequest"):
        request["requester"]["reference"] = "urn:uuid:00000000-0000-4000-8000-000000000000"


def not_a_message(message):
    message["type"] = "collection"


CASES = {
    "not a message": (not_a_message, "Bundle.type", "invalid", "Bundle.type must be 'message'"),
    "wrong event": (
        set_event("prescription-order-update"),
        "MessageHeader.eventCoding.code",
        "invalid",
        "MessageHeader.eventCoding.code must be 'prescription-order'.",
    ),
    "no MessageHeader": (
        drop("MessageHeader"),
        "Bundle.entry",
        "invalid",
        "resource.resourceType == 'MessageHeader'",
    ),
    "no Patient": (drop("Patient"), "Bundle.entry", "invalid", "resource.resourceType == 'Patient'"),
    "no MedicationRequest": (drop("MedicationRequest"), "Bundle.entry", "invalid", "'MedicationRequest'"),
    "no PractitionerRole": (
        drop("PractitionerRole"),
        "MedicationRequest.requester.reference",
        "invalid",
        "fullUrl ==",
    ),
    "mixed course of therapy": (
        mixed_course,
        "MedicationRequest.courseOfTherapyType.coding",
        "invalid",
        "Course of therapy type must either match for all MedicationRequests "
        "or be a mixture of 'acute' and 'continuous'.",
    ),
    "short-form check character": (
        bad_short_form,
        "MedicationRequest.groupIdentifier.value",
        "invalid",
        "checksum",
    ),
    "NHS Number check digit": (bad_nhs_number, "Patient.identifier", "invalid", "Invalid NHS Number"),
    "dangling reference": (
        dangling_requester,
        "MedicationRequest.requester.reference",
        "invalid",
        "Too few values",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_at_the_element(case):
    change, expression, code, words = CASES[case]
    message = bundle()
    change(message)
    error = refused(message)
    assert error.expression == [expression]
    assert error.code == code
    assert words in error.diagnostics


@pytest.mark.parametrize("value", [None, [], "text", 3, {"resourceType": "Patient"}])
def test_not_a_bundle(value):
    assert refused(value).expression == ["Bundle"]


def test_not_json():
    assert refused(b"{not json").expression == ["Bundle"]


WRONG = [None, 0, -1, "", "x", True, [], [None], {}, {"x": 1}, [{}], Decimal("1.5"), "2024-13-45"]


def paths(value, prefix=()):
    """Every (path) inside a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def mutate(value, path, replacement):
    *parents, last = path
    for step in parents:
        value = value[step]
    if replacement is DELETE:
        del value[last]
    else:
        value[last] = replacement


DELETE = object()


@pytest.mark.parametrize("seed", range(6))
def test_mutated_examples_only_ever_succeed_or_fail_with_400(seed):
    rng = random.Random(seed)
    originals = [bundle(i) for i in range(len(REQUESTS))]
    for _ in range(250):
        message = copy.deepcopy(rng.choice(originals))
        for _ in range(rng.randint(1, 3)):
            candidates = [p for p in paths(message) if p]
            path = rng.choice(candidates)
            try:
                mutate(message, path, DELETE if rng.random() < 0.3 else copy.deepcopy(rng.choice(WRONG)))
            except (KeyError, IndexError, TypeError):
                continue
        try:
            prepare(message, now=NOW)
        except FhirError as error:
            assert error.status == 400, (path, error)
            assert not error.diagnostics.startswith("The prescription could not be read"), (
                path,
                error.__cause__,
            )
