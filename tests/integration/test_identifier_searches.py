"""The searches integrators write by a business identifier, through the proxy: Tasks by their
owner's ODS code (``owner:identifier``, ``owner.identifier``), dispenses by the patient's NHS
Number (``subject:identifier``, ``patient.identifier``); each tenant finds its own only."""

from __future__ import annotations

import random
import string

import pytest

from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM
from tests.integration.test_message_identities import fresh_nhs_number
from tests.support.messages import FHIR_JSON, RFC4122, Case

pytestmark = pytest.mark.integration
HUB, SPOKE = "FA565", "VNE51"


def other_tenant(stack):
    ods = "T" + "".join(random.choices(string.ascii_uppercase + string.digits, k=5))
    return stack.session(client=stack.client(f"search-{ods}", "spoke", ods))


@pytest.fixture(scope="module")
def spoke(stack):
    return stack.session(client=stack.client("search-spoke", "spoke", SPOKE))


@pytest.fixture(scope="module")
def hub(stack):
    return stack.session(client=stack.client("search-hub", "hub", HUB))


def total(session, url: str, params: dict) -> int:
    r = session.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()["total"]


@pytest.mark.parametrize("form", ["owner:identifier", "owner.identifier"])
def test_tasks_by_their_owners_ods_code(stack, spoke, hub, form):
    case = Case()
    case.submit(stack.fhir, spoke)
    mine = {form: f"{ODS_SYSTEM}|{HUB}", "identifier": f"{RFC4122}|{case.task_identifier}"}
    assert total(hub, f"{stack.fhir}/Task", mine) == 1
    assert total(spoke, f"{stack.fhir}/Task", mine) == 1  # the spoke's Task too
    elsewhere = {**mine, form: f"{ODS_SYSTEM}|FZZ99"}
    assert total(hub, f"{stack.fhir}/Task", elsewhere) == 0
    assert total(other_tenant(stack), f"{stack.fhir}/Task", mine) == 0


def _dispense_for(stack, session, nhs_number: str) -> str:
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "birthDate": "1970-01-01",
    }
    r = session.post(f"{stack.fhir}/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    dispense = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationCodeableConcept": {"text": "Paracetamol 500mg tablets"},
        "subject": {"reference": f"Patient/{r.json()['id']}"},
    }
    r = session.post(f"{stack.fhir}/MedicationDispense", json=dispense, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("form", ["subject:identifier", "patient.identifier", "patient:identifier"])
def test_dispenses_by_the_patients_nhs_number(stack, spoke, form):
    nhs_number = fresh_nhs_number()
    dispense_id = _dispense_for(stack, spoke, nhs_number)
    r = spoke.get(f"{stack.fhir}/MedicationDispense", params={form: f"{NHS_NUMBER_SYSTEM}|{nhs_number}"})
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [dispense_id]
    # another NHS Number: nothing (not every dispense)
    assert (
        total(spoke, f"{stack.fhir}/MedicationDispense", {form: f"{NHS_NUMBER_SYSTEM}|{fresh_nhs_number()}"})
        == 0
    )


def test_another_tenant_finds_neither_the_patient_nor_the_dispense(stack, spoke):
    nhs_number = fresh_nhs_number()
    _dispense_for(stack, spoke, nhs_number)
    other = other_tenant(stack)
    params = {"patient.identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}"}
    assert total(other, f"{stack.fhir}/MedicationDispense", params) == 0
    # its own dispense for the same NHS Number is found, and only it
    theirs = _dispense_for(stack, other, nhs_number)
    r = other.get(f"{stack.fhir}/MedicationDispense", params=params)
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [theirs]


def test_other_chains_are_still_refused_to_tenants(stack, spoke):
    r = spoke.get(f"{stack.fhir}/Task", params={"focus.identifier": "x"})
    assert r.status_code == 400, r.text
