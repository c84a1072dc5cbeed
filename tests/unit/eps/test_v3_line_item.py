"""Line item fragments equal EPS's own translation (status and repeatNumber.low stripped)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from eps._fhir import Message
from eps._v3 import canonical
from eps.conformance import expected_fragments
from eps.v3_line_item import additional_instructions, course_of_therapy, dosage_text, line_item, repeat_high
from proxy.errors import FhirError

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
STEMS = [
    "primary-care__acute__nominated-pharmacy__medical-prescriber__1",
    "secondary-care__community__repeat-dispensing__nominated-pharmacy__clinical-practitioner__"
    "multiple-medication-requests__prescriber-endorsed__1",
]
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")


def requests(stem: str) -> tuple[Message, list[dict]]:
    bundle = json.loads((EXAMPLES / f"{stem}-Prepare-Request-200_OK.json").read_bytes(), parse_float=Decimal)
    message = Message(bundle)
    return message, message.of_type("MedicationRequest")


@pytest.mark.parametrize("stem", STEMS)
def test_line_items_equal_eps_translation(stem):
    message, items = requests(stem)
    high = repeat_high(items, course_of_therapy(items))
    built = [canonical(line_item(message, item, high, [], [])) for item in items]
    eps = expected_fragments((EXAMPLES / f"{stem}-Convert-Response-Send-200_OK.xml").read_bytes())
    assert built == eps["pertinentLineItem"]


def test_repeat_dispensing_high_is_repeats_allowed_plus_one():
    _, items = requests(STEMS[1])
    assert course_of_therapy(items) == "continuous-repeat-dispensing"
    assert repeat_high(items, "continuous-repeat-dispensing") == str(
        int(items[0]["dispenseRequest"]["numberOfRepeatsAllowed"]) + 1
    )
    assert repeat_high(items, "continuous") == "1"
    assert repeat_high(items, "acute") is None


def test_mixed_acute_and_continuous_is_acute_anything_else_mixed_is_refused():
    def item(code):
        return {"courseOfTherapyType": {"coding": [{"code": code}]}}

    assert course_of_therapy([item("acute"), item("continuous")]) == "acute"
    with pytest.raises(FhirError) as caught:
        course_of_therapy([item("acute"), item("continuous-repeat-dispensing")])
    assert caught.value.expression == ["MedicationRequest.courseOfTherapyType.coding"]


def test_dosages_join_by_sequence():
    request = {
        "dosageInstruction": [
            {"sequence": 2, "text": "then one daily"},
            {"sequence": 1, "text": "two now"},
            {"sequence": 1, "text": "one at night"},
        ]
    }
    assert dosage_text(request) == "two now, and one at night, then then one daily"


def test_additional_instructions_are_xml_js_text():
    request = {
        "note": [{"text": "Take with food & water"}],
        "extension": [
            {
                "url": "https://fhir.nhs.uk/StructureDefinition/Extension-DM-ControlledDrug",
                "extension": [{"url": "quantityWords", "valueString": "twenty"}],
            }
        ],
    }
    value = additional_instructions(request, ["Drug <A>"], ["Info"])
    assert (
        value == "<medication>Drug &lt;A&gt;</medication><patientInfo>Info</patientInfo>"
        "CD: twenty\nTake with food &amp; water"
    )


def test_medication_reference_resolves_in_the_bundle():
    message, items = requests(STEMS[0])
    item = copy.deepcopy(items[0])
    concept = item.pop("medicationCodeableConcept")
    item["medicationReference"] = {"reference": "urn:uuid:med-1"}
    message.by_full_url["urn:uuid:med-1"] = [{"resourceType": "Medication", "code": concept}]
    assert canonical(line_item(message, item, None, [], [])) == canonical(
        line_item(message, items[0], None, [], [])
    )
