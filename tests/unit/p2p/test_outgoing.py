"""What a partner is sent: no id or labels, logical references, a conditional create."""

import pytest

from p2p.outgoing import UnportableReference, criteria, portable, shared_identifier, transaction

NHS = "https://fhir.nhs.uk/Id/nhs-number"
RX = "https://example.org/prescriptions"
HELD = {
    "Patient/12": {
        "resourceType": "Patient",
        "id": "12",
        "identifier": [{"system": NHS, "value": "9000000009"}],
    },
    "Practitioner/3": {"resourceType": "Practitioner", "id": "3"},
    "urn:uuid:0b6f4c8e-1111-4d2a-9c3e-2a5f5d6c7e80": {
        "resourceType": "Organization",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A83008"}],
    },
}


def resolve(target):
    return HELD.get(target)


REQUEST = {
    "resourceType": "MedicationRequest",
    "id": "55",
    "meta": {
        "versionId": "2",
        "security": [{"system": "https://fhirplug.org/fhir/CodeSystem/tenant", "code": "A83008"}],
        "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest"],
    },
    "identifier": [{"value": "no-system"}, {"system": RX, "value": "RX-1"}],
    "status": "active",
    "subject": {"reference": "Patient/12", "display": "Jack"},
    "requester": {"reference": "urn:uuid:0b6f4c8e-1111-4d2a-9c3e-2a5f5d6c7e80"},
    "contained": [{"resourceType": "Medication", "id": "m"}],
    "medicationReference": {"reference": "#m"},
    "basedOn": [{"reference": "https://elsewhere.example/fhir/CarePlan/1"}],
}


def test_the_shared_identifier_is_the_first_with_system_and_value():
    assert shared_identifier(REQUEST) == {"system": RX, "value": "RX-1"}
    assert shared_identifier({"identifier": [{"value": "x"}]}) is None
    assert shared_identifier({}) is None


def test_the_copy_has_no_id_and_of_its_meta_only_the_profiles():
    out = portable(REQUEST, resolve)
    assert "id" not in out
    assert out["meta"] == {"profile": REQUEST["meta"]["profile"]}
    assert REQUEST["id"] == "55" and "security" in REQUEST["meta"], "the resource given is not changed"


def test_a_local_reference_becomes_the_targets_identifier():
    out = portable(REQUEST, resolve)
    assert out["subject"] == {
        "type": "Patient",
        "identifier": {"system": NHS, "value": "9000000009"},
        "display": "Jack",
    }
    assert out["requester"]["identifier"]["value"] == "A83008" and "reference" not in out["requester"]


def test_contained_and_absolute_references_travel_as_they_are():
    out = portable(REQUEST, resolve)
    assert out["medicationReference"] == {"reference": "#m"}
    assert out["basedOn"] == REQUEST["basedOn"]


def test_a_reference_to_something_without_an_identifier_cannot_travel():
    with pytest.raises(UnportableReference) as caught:
        portable({**REQUEST, "recorder": {"reference": "Practitioner/3"}}, resolve)
    assert caught.value.expression == "MedicationRequest.recorder"


def test_a_reference_to_something_not_held_here_cannot_travel():
    md = {
        "resourceType": "MedicationDispense",
        "authorizingPrescription": [{"reference": "MedicationRequest/9"}],
    }
    with pytest.raises(UnportableReference) as caught:
        portable(md, resolve)
    assert caught.value.expression == "MedicationDispense.authorizingPrescription[0]"


def test_the_delivery_is_one_conditional_create_on_the_identifier():
    body = transaction(portable(REQUEST, resolve), {"system": RX, "value": "RX 1"})
    [entry] = body["entry"]
    assert body["type"] == "transaction" and entry["fullUrl"].startswith("urn:uuid:")
    assert entry["request"] == {
        "method": "POST",
        "url": "MedicationRequest",
        "ifNoneExist": "identifier=https://example.org/prescriptions|RX%201",
    }


def test_criteria_escape_what_would_break_the_query():
    assert criteria({"system": "urn:x", "value": "a&b=c"}) == "identifier=urn:x|a%26b%3Dc"
