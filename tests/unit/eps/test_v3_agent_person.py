"""The author's AgentPerson fragment equals EPS's own translation of the shared examples."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from eps._fhir import Message
from eps._v3 import canonical
from eps.conformance import expected_fragments
from eps.v3_agent_person import agent_person, professional_code
from proxy.errors import FhirError

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
STEMS = [
    "primary-care__acute__nominated-pharmacy__medical-prescriber__1",
    "secondary-care__community__repeat-dispensing__nominated-pharmacy__clinical-practitioner__"
    "multiple-medication-requests__prescriber-endorsed__1",
]
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")


def example(stem: str) -> tuple[Message, dict]:
    bundle = json.loads((EXAMPLES / f"{stem}-Prepare-Request-200_OK.json").read_bytes(), parse_float=Decimal)
    message = Message(bundle)
    request = message.of_type("MedicationRequest")[0]
    return message, message.resolve(request["requester"], "MedicationRequest.requester")


@pytest.mark.parametrize("stem", STEMS)
def test_agent_person_equals_eps_translation(stem):
    message, role = example(stem)
    eps = expected_fragments((EXAMPLES / f"{stem}-Convert-Response-Send-200_OK.xml").read_bytes())
    assert canonical(agent_person(message, role)) == eps["AgentPerson"][0]


def test_gmc_number_loses_its_c_prefix():
    assert (
        professional_code(
            {"identifier": [{"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "C1234567"}]}
        )
        == "1234567"
    )


def test_two_professional_codes_are_refused_at_practitioner_identifier():
    practitioner = {
        "identifier": [
            {"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "1234567"},
            {"system": "https://fhir.hl7.org.uk/Id/nmc-number", "value": "12A3456B"},
        ]
    }
    with pytest.raises(FhirError) as caught:
        professional_code(practitioner)
    assert caught.value.status == 400
    assert caught.value.expression == ["Practitioner.identifier"]
    assert "But got: 1234567, 12A3456B" in caught.value.diagnostics


def test_role_without_telecom_falls_back_to_the_practitioner():
    message, role = example(STEMS[0])
    role = copy.deepcopy(role)
    del role["telecom"]
    practitioner = message.resolve(role["practitioner"], "PractitionerRole.practitioner")
    practitioner["telecom"] = [{"system": "phone", "value": "0113 496 0000", "use": "work"}]
    built = canonical(agent_person(message, role))
    assert b'<telecom use="WP" value="tel:01134960000"></telecom>' in built
