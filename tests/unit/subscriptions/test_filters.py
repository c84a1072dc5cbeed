"""Filter criteria are FHIR searches matched in memory: tokens, identifiers and references, OR
within a parameter, AND across them; anything the table does not know is refused."""

import pytest

from subscriptions.filters import FilterError, all_match, parse

MR = {
    "resourceType": "MedicationRequest",
    "status": "active",
    "intent": "order",
    "identifier": [{"system": "https://example.org/rx", "value": "RX1"}],
    "subject": {"reference": "https://fhir.example.org/fhir/Patient/p1/_history/2"},
    "dispenseRequest": {"performer": {"identifier": {"system": "https://ods", "value": "FCD01"}}},
}


def test_a_reference_matches_by_type_and_id_even_when_absolute():
    assert parse("MedicationRequest?subject=Patient/p1", "MedicationRequest").matches(MR)
    assert not parse("subject=Patient/p2", "MedicationRequest").matches(MR)


def test_a_reference_by_identifier_matches_by_system_and_value_or_value():
    assert parse("performer=https://ods|FCD01", "MedicationRequest").matches(MR)
    assert parse("performer=FCD01", "MedicationRequest").matches(MR)
    assert not parse("performer=https://ods|OTHER", "MedicationRequest").matches(MR)


def test_values_of_one_parameter_are_alternatives_and_parameters_all_required():
    assert parse("status=draft,active&intent=order", "MedicationRequest").matches(MR)
    assert not parse("status=active&intent=plan", "MedicationRequest").matches(MR)


def test_an_identifier_matches_with_or_without_its_system():
    assert parse("identifier=https://example.org/rx|RX1", "MedicationRequest").matches(MR)
    assert parse("identifier=RX1", "MedicationRequest").matches(MR)
    assert not parse("identifier=https://other|RX1", "MedicationRequest").matches(MR)


def test_the_type_alone_narrows_nothing():
    f = parse("MedicationRequest?", "MedicationRequest")
    assert f.matches(MR) and f.text == "MedicationRequest?"


def test_a_task_code_matches_by_code_or_system_and_code():
    task = {"resourceType": "Task", "code": {"coding": [{"system": "https://x", "code": "fulfill"}]}}
    assert parse("code=fulfill", "Task").matches(task)
    assert parse("code=https://x|fulfill", "Task").matches(task)


@pytest.mark.parametrize(
    "text",
    ["Task?status=active", "colour=red", "status=", "", "subject"],
)
def test_what_cannot_be_applied_is_refused(text):
    with pytest.raises(FilterError):
        parse(text, "MedicationRequest")


def test_several_filters_are_all_required():
    filters = [parse("status=active", "MedicationRequest"), parse("intent=plan", "MedicationRequest")]
    assert not all_match(filters, MR)
    assert all_match([], MR)
