"""A message's Patient and Organization creates made conditional on NHS Number and ODS code."""

from __future__ import annotations

from hubspoke.business_identifiers import business_identifier, conditional_creates, make_conditional
from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM


def _bundle(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _post(resource: dict, **request) -> dict:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}


PATIENT = {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9449304130"}]}
ORG = {"resourceType": "Organization", "identifier": [{"system": ODS_SYSTEM, "value": "VNE51"}]}


def test_a_plain_create_of_a_patient_and_an_organization_becomes_conditional_on_their_identifier():
    bundle = _bundle(
        {"resource": {"resourceType": "Task"}, "request": {"method": "POST", "url": "Task"}},
        _post(PATIENT),
        _post(ORG),
    )
    made = make_conditional(bundle)
    assert [(c.index, c.resource_type) for c in made] == [(1, "Patient"), (2, "Organization")]
    assert bundle["entry"][1]["request"]["ifNoneExist"] == f"identifier={NHS_NUMBER_SYSTEM}|9449304130"
    assert bundle["entry"][2]["request"]["ifNoneExist"] == f"identifier={ODS_SYSTEM}|VNE51"
    assert "ifNoneExist" not in bundle["entry"][0]["request"]
    assert made[0].expression == "Bundle.entry[1].resource.identifier"


def test_the_senders_own_criteria_are_kept():
    bundle = _bundle(_post(PATIENT, ifNoneExist="identifier=x|y"))
    assert make_conditional(bundle) == []
    assert bundle["entry"][0]["request"]["ifNoneExist"] == "identifier=x|y"


def test_updates_and_resources_without_the_identifier_are_left_alone():
    put = {"resource": {**PATIENT, "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}}
    other = _post({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "1"}]})
    assert conditional_creates(_bundle(put, other, _post({"resourceType": "Patient"}))) == []


def test_two_different_nhs_numbers_on_one_patient_are_not_guessed_between():
    two = {
        "resourceType": "Patient",
        "identifier": [
            {"system": NHS_NUMBER_SYSTEM, "value": "9449304130"},
            {"system": NHS_NUMBER_SYSTEM, "value": "9449305552"},
        ],
    }
    assert business_identifier(two) is None
    same_twice = {"resourceType": "Patient", "identifier": PATIENT["identifier"] * 2}
    assert business_identifier(same_twice) == (NHS_NUMBER_SYSTEM, "9449304130")
