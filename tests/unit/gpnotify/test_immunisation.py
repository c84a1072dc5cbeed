"""ITK009D built from R4 data equals the official example element for element (ids and timestamps
apart), is valid STU3, and refuses with a clear OperationOutcome instead of building half a message."""

from __future__ import annotations

import copy

import pytest

from gpnotify import IMMUNISATION, Sender, build_immunisation
from gpnotify.serialise import from_xml, validate
from proxy.errors import FhirError
from tests.unit.gpnotify.examples import differences, example, normalise, r4_inputs

SENDER = Sender("X26", "NOROT003")  # the example's pharmacy and its MESH mailbox


def inputs():
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    return focus, related


def built():
    focus, related = inputs()
    return build_immunisation(focus, related, SENDER)


def test_the_message_matches_the_official_example_element_for_element():
    ours = normalise(from_xml(built().xml()))  # through XML: what goes on MESH
    theirs = normalise(example("immunisation-JackDawkins-itk-wrapper.xml"))
    assert differences(ours, theirs) == []


def test_the_json_and_the_xml_say_the_same():
    message = built()
    assert normalise(from_xml(message.xml())) == normalise(message.bundle)


def test_the_message_is_valid_stu3():
    validate(built().bundle)


def test_it_is_addressed_to_the_patients_practice_on_the_immunisation_workflow():
    message = built()
    assert message.receiver_ods == "A83627"
    assert message.workflow_id == "DIGMED_FLU_VAC" == IMMUNISATION.workflow_id
    header = message.bundle["entry"][0]["resource"]
    assert header["event"]["code"] == "ITK009D"
    assert header["source"]["endpoint"] == "NOROT003"


def test_a_rebuild_of_the_same_stored_version_is_the_same_message_and_a_new_version_is_not():
    focus, related = inputs()
    first = build_immunisation(focus, related, SENDER)
    again = build_immunisation(copy.deepcopy(focus), related, SENDER)
    newer = build_immunisation({**focus, "meta": {"versionId": "2"}}, related, SENDER)
    assert first.message_id == again.message_id != newer.message_id
    assert first.bundle["identifier"]["value"] == first.message_id


def test_the_narrative_says_what_the_entries_say():
    comp = built().bundle["entry"][3]["resource"]["entry"][0]["resource"]
    text = {s["title"]: s["text"]["div"] for s in comp["section"]}
    assert "9912003888" in text["Patient demographics"] and "Dawkins" in text["Patient demographics"]
    assert "ODS Organization Code: A83627" in text["GP practice"]
    assert "Talent 0.5ml" in text["Vaccinations"] and "NMC identifier: 95B0242E" in text["Vaccinations"]
    assert "Immunization consent given" in text["Legal information"]


def refused(focus, related) -> FhirError:
    with pytest.raises(FhirError) as caught:
        build_immunisation(focus, related, SENDER)
    return caught.value


def test_a_patient_without_a_registered_practice_is_refused():
    focus, related = inputs()
    related = [{k: v for k, v in r.items() if k != "generalPractitioner"} for r in related]
    err = refused(focus, related)
    assert err.status == 422 and err.expression == ["Patient.generalPractitioner"]
    assert "no registered GP practice" in err.diagnostics


def test_a_practice_without_an_ods_code_is_refused():
    focus, related = inputs()
    related = [{**r, "identifier": []} if r.get("id") == "org-mgp" else r for r in related]
    err = refused(focus, related)
    assert err.expression == ["Patient.generalPractitioner[0]"] and "ODS" in err.diagnostics


def test_a_practice_named_only_by_its_ods_code_is_enough():
    focus, related = inputs()
    gp = {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A83627"},
          "display": "MGP Medical Centre"}  # fmt: skip
    related = [{**r, "generalPractitioner": [gp]} if r["resourceType"] == "Patient" else r for r in related]
    related = [r for r in related if r.get("id") != "org-mgp"]
    message = build_immunisation(focus, related, SENDER)
    assert normalise(message.bundle) == normalise(built().bundle)


def test_a_patient_without_an_nhs_number_is_refused():
    focus, related = inputs()
    related = [{**r, "identifier": []} if r["resourceType"] == "Patient" else r for r in related]
    assert refused(focus, related).expression == ["Patient.identifier"]


def test_an_immunisation_not_completed_is_refused():
    focus, related = inputs()
    assert refused({**focus, "status": "not-done"}, related).expression == ["Immunization.status"]


def test_a_patient_not_among_the_stored_resources_is_refused():
    focus, related = inputs()
    related = [r for r in related if r["resourceType"] != "Patient"]
    err = refused(focus, related)
    assert err.expression == ["Immunization.patient"] and "Patient/pat-jack" in err.diagnostics


def test_an_immunisation_without_its_vaccinator_is_refused():
    focus, related = inputs()
    assert refused({**focus, "performer": []}, related).expression == ["Immunization.performer"]
