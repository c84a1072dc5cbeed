"""Messages built as the hub-spoke seed says (plain POSTs of the Patient and the Organization, no
ifNoneExist) leave one Patient per NHS Number and one Organization per ODS code for each tenant,
however many messages name them; several stored records with one NHS Number are a 412 naming the
entry, and nothing is stored; another tenant's records are neither matched nor revealed."""

from __future__ import annotations

import random
import string

import pytest

from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM
from hubspoke.nhs_number import nhs_number_valid
from tests.support.messages import FHIR_JSON, RFC4122, Case

pytestmark = pytest.mark.integration
EXAMPLE_NHS_NUMBER = "9449304130"


def fresh_nhs_number() -> str:
    while True:
        candidate = "9" + "".join(random.choices(string.digits, k=8))
        for check in string.digits:
            if nhs_number_valid(candidate + check):
                return candidate + check


def fresh_ods() -> str:
    return "T" + "".join(random.choices(string.ascii_uppercase + string.digits, k=5))


def seed_message(case: Case, nhs_number: str, spoke_ods: str) -> dict:
    """The IG's example with this test's patient and spoke, built as the seed says: plain POSTs."""
    bundle = case.load("valid-spoke-to-hub.json")
    for entry in bundle["entry"]:
        entry["request"].pop("ifNoneExist", None)
        for identifier in entry["resource"].get("identifier") or []:
            if identifier.get("value") == EXAMPLE_NHS_NUMBER:
                identifier["value"] = nhs_number
            elif identifier.get("value") == "VNE51":
                identifier["value"] = spoke_ods
    return bundle


def locations(answer: dict) -> dict[str, str]:
    return {
        loc.split("/")[0]: loc.split("/")[1]
        for e in answer["entry"]
        if (loc := e["response"].get("location"))
    }


@pytest.fixture
def spoke_ods() -> str:
    return fresh_ods()


@pytest.fixture
def spoke(stack, spoke_ods):
    return stack.session(client=stack.client(f"ids-{spoke_ods}", "spoke", spoke_ods))


def count(session, fhir: str, rtype: str, system: str, value: str) -> int:
    r = session.get(f"{fhir}/{rtype}", params={"identifier": f"{system}|{value}", "_summary": "count"})
    assert r.status_code == 200, r.text
    return r.json()["total"]


def test_repeat_messages_about_one_patient_store_one_patient_and_one_organization(
    stack, spoke, spoke_ods, http
):
    nhs_number = fresh_nhs_number()
    first = spoke.post(stack.fhir, json=seed_message(Case(), nhs_number, spoke_ods), headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    second = spoke.post(stack.fhir, json=seed_message(Case(), nhs_number, spoke_ods), headers=FHIR_JSON)
    assert second.status_code == 201, second.text

    a, b = locations(first.json()), locations(second.json())
    assert a["Patient"] == b["Patient"] and a["Organization"] == b["Organization"]
    assert a["Task"] != b["Task"]  # two prescriptions, one patient
    assert count(http, stack.fhir, "Patient", NHS_NUMBER_SYSTEM, nhs_number) == 1
    assert count(http, stack.fhir, "Organization", ODS_SYSTEM, spoke_ods) == 1
    # the second message's Task and MedicationRequest point at the patient stored first
    task = http.get(f"{stack.fhir}/Task/{b['Task']}").json()
    assert task["for"]["reference"].endswith(f"Patient/{a['Patient']}")


def test_two_stored_patients_with_the_nhs_number_are_a_412_naming_the_entry(stack, spoke, spoke_ods, http):
    nhs_number = fresh_nhs_number()
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "birthDate": "1970-01-01",
    }
    for _ in range(2):  # duplicates made before intake was conditional, or by hand
        r = spoke.post(f"{stack.fhir}/Patient", json=patient, headers=FHIR_JSON)
        assert r.status_code == 201, r.text
    case = Case()
    bundle = seed_message(case, nhs_number, spoke_ods)
    r = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)

    assert r.status_code == 412, r.text
    [issue] = r.json()["issue"]
    assert issue["code"] == "duplicate"
    assert nhs_number in issue["diagnostics"] and "nothing was stored" in issue["diagnostics"]
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    assert issue["expression"] == [f"Bundle.entry[{index}].resource.identifier"]
    tasks = http.get(f"{stack.fhir}/Task", params={"identifier": f"{RFC4122}|{case.task_identifier}"}).json()
    assert tasks["total"] == 0
    assert count(http, stack.fhir, "Organization", ODS_SYSTEM, spoke_ods) == 0


def test_another_tenants_patient_is_not_matched(stack, spoke, spoke_ods):
    nhs_number = fresh_nhs_number()
    mine = spoke.post(stack.fhir, json=seed_message(Case(), nhs_number, spoke_ods), headers=FHIR_JSON)
    assert mine.status_code == 201, mine.text
    other_ods = fresh_ods()
    other = stack.session(client=stack.client(f"ids-{other_ods}", "spoke", other_ods))
    theirs = other.post(stack.fhir, json=seed_message(Case(), nhs_number, other_ods), headers=FHIR_JSON)
    assert theirs.status_code == 201, theirs.text
    # each spoke has its own record of the patient; neither learns of the other's
    assert locations(mine.json())["Patient"] != locations(theirs.json())["Patient"]
    assert count(other, stack.fhir, "Patient", NHS_NUMBER_SYSTEM, nhs_number) == 1
    assert count(spoke, stack.fhir, "Patient", NHS_NUMBER_SYSTEM, nhs_number) == 1
