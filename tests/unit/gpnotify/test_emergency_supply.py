"""ITK010D built from R4 emergency-supply dispenses equals the official WilliamSmith example element for
element (ids and timestamps apart, and two differences the example cannot be matched on, named below),
is valid STU3, and refuses what is not one completed emergency-supply consultation."""

from __future__ import annotations

import pytest

from gpnotify.emergency_supply import EMERGENCY_SUPPLY, build_emergency_supply
from gpnotify.itk import Sender
from gpnotify.serialise import from_xml, validate
from proxy.errors import FhirError
from tests.unit.gpnotify.examples import differences, example, normalise, r4_inputs

SENDER = Sender("FA000", "NOROT003")
# What the example says that the same data cannot: (1) its title calls the pharmacy "Overtown Pharmacy
# 118" while its Organization is "Overtown Pharmacy" (our title is made from the Organization);
# (2) its Patient.generalPractitioner names only the GP, the practice being in managingOrganization;
# we keep R4's generalPractitioner as stored, which names the practice too (that is where we find it).
EXPECTED = [
    ".entry[3].resource.entry[0].resource.title: ours 'Overtown Pharmacy Emergency Medication Supply Record'"
    " != theirs 'Overtown Pharmacy 118 Emergency Medication Supply Record'",
    ".entry[3].resource.entry[4].resource.generalPractitioner: 2 items in ours, 1 in theirs",
]


def inputs():
    resources = r4_inputs("emergency-supply-WilliamSmith.r4.json")
    return resources[:2], resources[2:]


def built():
    dispenses, related = inputs()
    return build_emergency_supply(dispenses, related, SENDER)


def test_the_message_matches_the_official_example_but_for_two_named_differences():
    ours = normalise(from_xml(built().xml()))
    # the upstream document misses a </p>; the .full copy has the repaired document inside the wrapper
    theirs = normalise(example("emergency-supply-WilliamSmith-itk-wrapper.full.xml"))
    assert differences(ours, theirs) == EXPECTED


def test_the_message_is_valid_stu3_and_goes_to_the_practice_on_the_emergency_workflow():
    message = built()
    validate(message.bundle)
    assert (message.receiver_ods, message.workflow_id) == ("GP123456", "DIGMED_EMG_MED")
    assert message.bundle["entry"][0]["resource"]["event"]["code"] == EMERGENCY_SUPPLY.event == "ITK010D"


def test_the_same_dispenses_in_another_order_are_the_same_message():
    dispenses, related = inputs()
    assert build_emergency_supply(dispenses[::-1], related, SENDER).message_id == built().message_id


def test_the_pharmacists_own_words_are_carried_as_narrative():
    comp = built().bundle["entry"][3]["resource"]["entry"][0]["resource"]
    text = {s["title"]: s["text"] for s in comp["section"]}
    assert "Type 2 diabetes" in text["History"]["div"]
    assert text["Referral Details"]["status"] == "generated" and "NHS 111" in text["Referral Details"]["div"]
    assert "2 cartridge" in text["Medications and medical devices"]["div"]


def test_without_the_pharmacists_record_the_narrative_only_sections_are_left_out():
    dispenses, related = inputs()
    related = [r for r in related if r["resourceType"] != "Composition"]
    comp = build_emergency_supply(dispenses, related, SENDER).bundle["entry"][3]["resource"]["entry"][0][
        "resource"
    ]
    assert "History" not in {s["title"] for s in comp["section"]}
    validate(build_emergency_supply(dispenses, related, SENDER).bundle)


def refused(dispenses, related) -> FhirError:
    with pytest.raises(FhirError) as caught:
        build_emergency_supply(dispenses, related, SENDER)
    return caught.value


def test_a_dispense_that_is_not_an_emergency_supply_is_refused():
    dispenses, related = inputs()
    ordinary = {**dispenses[0], "type": {"coding": [{"system": "http://snomed.info/sct", "code": "123"}]}}
    err = refused([ordinary], related)
    assert (
        err.status == 422
        and err.expression == ["MedicationDispense.type"]
        and "1218611000000102" in err.diagnostics
    )


def test_dispenses_of_two_consultations_are_refused():
    dispenses, related = inputs()
    other = {**dispenses[1], "context": {"reference": "Encounter/other"}}
    assert refused([dispenses[0], other], related).expression == ["MedicationDispense.context"]


def test_a_patient_without_a_practice_is_refused():
    dispenses, related = inputs()
    related = [{**r, "generalPractitioner": []} if r["resourceType"] == "Patient" else r for r in related]
    assert refused(dispenses, related).expression == ["Patient.generalPractitioner"]


def test_a_consultation_without_its_pharmacy_is_refused():
    dispenses, related = inputs()
    related = [r for r in related if r.get("id") != "org-fa000"]
    assert refused(dispenses, related).expression == ["Encounter.serviceProvider"]


def test_the_document_alone_matches_the_repaired_upstream_document():
    from gpnotify.serialise import to_xml

    document = built().bundle["entry"][3]["resource"]
    ours = normalise(from_xml(to_xml(document)))
    theirs = normalise(example("emergency-supply-WilliamSmith-document.fixed.xml"))
    assert differences(ours, theirs) == [d.replace(".entry[3].resource", "", 1) for d in EXPECTED]
