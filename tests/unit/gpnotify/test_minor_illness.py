"""ITK013D built from a stored R4 consultation Encounter against the official JackSmith example.

That example is the least consistent of the three (the use case is retired upstream): it is not even
valid STU3 as published (a SNOMED code with a trailing space, repaired here before parsing, as the
emergency-supply document's missing </p> is repaired in the shared .fixed copy), its header names a
receiver that is not in the message, and it copies data from the WilliamSmith example. Every
difference is listed below with its reason; anything else must be equal."""

from __future__ import annotations

import re

import pytest

from gpnotify.itk import Sender
from gpnotify.minor_illness import MINOR_ILLNESS, build_minor_illness_referral
from gpnotify.serialise import from_xml, validate
from proxy.errors import FhirError
from tests.unit.gpnotify.examples import EXAMPLES, differences, normalise, r4_inputs

SENDER = Sender("FQ123", "NOROT003")
DOC = ".entry[3].resource.entry"
EXPECTED = [
    # the example's header: focus and receiver point at nothing in the message, its receiver
    # Organization is A8797979 (not the patient's practice GP123456) and it lists it before the sender
    ".entry[0].resource.focus[0].reference: ours 'Bundle#1' != theirs 'urn:uuid:(dangling)'",
    ".entry[0].resource.receiver.reference: ours 'Organization#2' != theirs 'urn:uuid:(dangling)'",
    ".entry[0].resource.sender.reference: ours 'Organization#1' != theirs 'Organization#2'",
    ".entry[1].resource.identifier[0].value: ours 'FQ123' != theirs 'A8797979'",
    ".entry[2].resource.identifier[0].value: ours 'GP123456' != theirs 'FQ123'",
    # the title spells the pharmacy unlike its Organization ("ANDOVER PHAMACY"); ours uses the Organization
    f"{DOC}[0].resource.title: ours 'ANDOVER PHAMACY Community Pharmacist Minor Illness Referral Consultation"
    " Service' != theirs 'ANDOVER PHARMACY Community Pharmacist Minor Illness Referral Consultation Service'",
    # the example codes the job role with a ValueSet URL as the system; ours is the CodeSystem
    f"{DOC}[2].resource.code[0].coding[0].system: ours"
    " 'https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-SDSJobRoleName-1'"
    " != theirs 'https://fhir.hl7.org.uk/STU3/ValueSet/CareConnect-SDSJobRoleName-1'",
    # R4 keeps the 111 service on the requester's PractitionerRole (STU3 put it in requester.onBehalfOf,
    # which we also fill from it); the practice is found in Patient.generalPractitioner, kept as stored
    f"{DOC}[2].resource.organization: only in ours"
    ' ({"reference": "Organization#3", "display": "HAMPSHIRE NHS 111 CALL CENTRE"})',
    f'{DOC}[5].resource.generalPractitioner: only in ours ([{{"reference": "Organization#4"}}])',
    # the example's List has no identifier and names the wrong patient (copied from WilliamSmith)
    f'{DOC}[11].resource.identifier: only in ours ("(made per message)")',
    f"{DOC}[11].resource.subject.display: ours 'SMITH, Jack' != theirs 'SMITH, William (Mr)'",
    # every dispense says its quantity in words (gpnotify.dispensing); the example does for one of two
    f'{DOC}[13].resource.quantity.extension: only in ours ([{{"url":'
    ' "https://fhir.hl7.org.uk/STU3/StructureDefinition/Extension-CareConnect-MedicationQuantityText-1",'
    ' "valueString)',
    # R4 Observation.encounter is STU3 Observation.context: kept, the example has none
    f'{DOC}[16].resource.context: only in ours ({{"reference": "Encounter#1"}})',
    f'{DOC}[17].resource.context: only in ours ({{"reference": "Encounter#1"}})',
]


def the_example() -> dict:
    xml = (EXAMPLES / "minor-illness-referral-JackSmith-itk-wrapper.xml").read_text()
    return from_xml(re.sub(r'value="([^"]*?)\s+"', r'value="\1"', xml))  # the trailing-space code


def inputs():
    focus, *related = r4_inputs("minor-illness-referral-JackSmith.r4.json")
    return focus, related


def built():
    focus, related = inputs()
    return build_minor_illness_referral(focus, related, SENDER)


def test_the_message_matches_the_official_example_but_for_its_named_defects():
    assert differences(normalise(from_xml(built().xml())), normalise(the_example())) == EXPECTED


def test_the_message_is_valid_stu3_and_goes_to_the_practice_on_the_minor_illness_workflow():
    message = built()
    validate(message.bundle)
    assert (message.receiver_ods, message.workflow_id) == ("GP123456", "DIGMED_MINOR_ILLNESS_PEM")
    assert message.bundle["entry"][0]["resource"]["event"]["code"] == MINOR_ILLNESS.event == "ITK013D"


def test_the_referral_names_the_111_service_it_came_from():
    doc = built().bundle["entry"][3]["resource"]["entry"]
    referral = next(e["resource"] for e in doc if e["resource"]["resourceType"] == "ReferralRequest")
    assert referral["requester"]["onBehalfOf"]["display"] == "HAMPSHIRE NHS 111 CALL CENTRE"
    assert referral["identifier"][0]["value"] == "ABC1234567"


def test_a_consultation_without_medicines_or_observations_leaves_their_sections_out():
    focus, related = inputs()
    related = [r for r in related if r["resourceType"] not in ("MedicationDispense", "Observation")]
    message = build_minor_illness_referral(focus, related, SENDER)
    validate(message.bundle)
    titles = {s["title"] for s in message.bundle["entry"][3]["resource"]["entry"][0]["resource"]["section"]}
    assert "Observations" not in titles and "Medications and medical devices" not in titles


def refused(focus, related) -> FhirError:
    with pytest.raises(FhirError) as caught:
        build_minor_illness_referral(focus, related, SENDER)
    return caught.value


def test_a_consultation_not_finished_is_refused():
    focus, related = inputs()
    assert refused({**focus, "status": "in-progress"}, related).expression == ["Encounter.status"]


def test_a_consultation_without_its_referral_is_refused():
    focus, related = inputs()
    related = [r for r in related if r["resourceType"] != "ServiceRequest"]
    assert refused(focus, related).expression == ["Encounter.basedOn"]


def test_a_patient_without_a_practice_is_refused():
    focus, related = inputs()
    related = [{**r, "generalPractitioner": []} if r["resourceType"] == "Patient" else r for r in related]
    assert refused(focus, related).expression == ["Patient.generalPractitioner"]
