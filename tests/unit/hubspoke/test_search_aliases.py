"""Searches by a business identifier rewritten into forms the store answers and tenancy admits."""

from __future__ import annotations

import pytest

from hubspoke.search_aliases import MAX_PATIENTS, NO_MATCH, TooManyPatients, needs_rewrite, rewrite

ODS = "https://fhir.nhs.uk/Id/ods-organization-code|VNE51"
NHS = "https://fhir.nhs.uk/Id/nhs-number|9449304130"


def _none(identifier: str) -> list[str]:
    raise AssertionError("no Patient look-up for a Task")


@pytest.mark.parametrize("name", ["owner:identifier", "owner.identifier"])
def test_a_tasks_owner_by_identifier_is_the_owner_identifier_token(name):
    assert rewrite("Task", [(name, ODS), ("status", "requested")], _none) == [
        ("owner-identifier", ODS),
        ("status", "requested"),
    ]


def test_a_tasks_patient_and_requester_by_identifier():
    assert rewrite("Task", [("patient.identifier", NHS), ("requester:identifier", ODS)], _none) == [
        ("patient-identifier", NHS),
        ("requester-identifier", ODS),
    ]


@pytest.mark.parametrize("name", ["subject:identifier", "patient.identifier", "patient:identifier"])
def test_a_dispense_by_the_patients_nhs_number_asks_for_the_callers_patients(name):
    asked = []

    def patients_with(identifier):
        asked.append(identifier)
        return ["p1", "p2"]

    base = name.split(":")[0].split(".")[0]
    assert rewrite("MedicationDispense", [(name, NHS)], patients_with) == [(base, "Patient/p1,Patient/p2")]
    assert asked == [NHS]


def test_no_patient_with_the_identifier_is_an_empty_answer_not_every_dispense():
    assert rewrite("MedicationRequest", [("subject:identifier", NHS)], lambda i: []) == [("_id", NO_MATCH)]


def test_too_many_patients_is_refused():
    with pytest.raises(TooManyPatients):
        rewrite(
            "MedicationDispense",
            [("patient.identifier", NHS)],
            lambda i: [str(n) for n in range(MAX_PATIENTS + 1)],
        )


def test_other_chains_and_parameters_are_left_for_tenancy_to_judge():
    assert not needs_rewrite("Task", [("focus.identifier", "x"), ("owner", "Organization/1")])
    assert not needs_rewrite("Observation", [("subject:identifier", NHS)])
    assert not needs_rewrite("Task", [("owner.name", "x")])
    assert needs_rewrite("Task", [("owner:identifier", ODS)])
