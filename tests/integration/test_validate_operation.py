"""``$validate`` through the real proxy and store: a ``Parameters`` resource is validated (not
read as the operation's parameters), ``mode`` is honoured, and line numbers refer to the
caller's own document."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def validator(stack):
    return stack.session(client=stack.client("validate-op-validator", "validator"))


def issues(r) -> list[dict]:
    assert r.status_code == 200, r.text
    return r.json()["issue"]


def test_a_parameters_resource_is_validated_as_a_resource(stack, validator):
    body = {"resourceType": "Parameters", "parameter": [{"name": "greeting", "valueString": "hello"}]}
    found = issues(validator.post(f"{stack.fhir}/Parameters/$validate", json=body, headers=FHIR_JSON))
    said = " ".join(i.get("diagnostics", "") for i in found)
    assert "No resource supplied" not in said
    assert not [i for i in found if i["severity"] in ("error", "fatal")], found


def test_a_broken_parameters_resource_is_reported(stack, validator):
    # a parameter with neither a value, a resource nor parts breaks inv-1
    body = {"resourceType": "Parameters", "parameter": [{"name": "empty"}]}
    found = issues(validator.post(f"{stack.fhir}/Parameters/$validate", json=body, headers=FHIR_JSON))
    assert [i for i in found if i["severity"] in ("error", "fatal")], found


def test_the_operations_own_parameters_are_still_read_as_such(stack, validator):
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}}],
    }
    found = issues(validator.post(f"{stack.fhir}/Patient/$validate", json=body, headers=FHIR_JSON))
    assert not [i for i in found if i["severity"] in ("error", "fatal")], found


def test_an_unknown_mode_is_refused_naming_it(stack, validator):
    r = validator.post(
        f"{stack.fhir}/Patient/$validate",
        params={"mode": "explode"},
        json={"resourceType": "Patient"},
        headers=FHIR_JSON,
    )
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert "explode" in issue["diagnostics"] and issue["expression"]


def test_mode_update_needs_an_id_and_mode_create_does_not(stack, validator):
    patient = {"resourceType": "Patient", "gender": "male"}
    update = validator.post(
        f"{stack.fhir}/Patient/$validate", params={"mode": "update"}, json=patient, headers=FHIR_JSON
    )
    assert update.status_code == 422
    assert "ID must be populated" in update.json()["issue"][0]["diagnostics"]
    create = validator.post(
        f"{stack.fhir}/Patient/$validate", params={"mode": "create"}, json=patient, headers=FHIR_JSON
    )
    assert not [i for i in issues(create) if i["severity"] in ("error", "fatal")]


def test_line_numbers_point_into_the_callers_document(stack, validator):
    doc = {"resourceType": "Patient", "name": [{"family": "Smith"}], "communication": [{"preferred": True}]}
    text = json.dumps(doc, indent=2)
    found = issues(validator.post(f"{stack.fhir}/Patient/$validate", data=text, headers=FHIR_JSON))
    lines = [loc for i in found for loc in i.get("location", []) if loc.startswith("Line[")]
    assert lines and any(not loc.startswith("Line[1]") for loc in lines), found


def test_rules_true_reports_the_business_rule_a_write_would_be_refused_by(stack, validator):
    from pathlib import Path

    path = (
        Path(__file__).resolve().parents[2] / "ig" / "examples" / "invalid-spoke-to-hub-bad-nhs-number.json"
    )
    raw = path.read_bytes()
    url = f"{stack.fhir}/Bundle/$validate"
    plain = issues(validator.post(url, data=raw, headers=FHIR_JSON))
    assert not [i for i in plain if i["severity"] in ("error", "fatal")]
    ruled = issues(validator.post(url, params={"rules": "true"}, data=raw, headers=FHIR_JSON))
    found = [i for i in ruled if i.get("code") == "business-rule"]
    assert found and "NHS" in found[0]["diagnostics"] and found[0]["expression"]


def test_mode_delete_validates_deleting_a_stored_resource(stack, http):
    created = http.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    r = http.post(
        f"{stack.fhir}/Patient/{pid}/$validate",
        params={"mode": "delete"},
        json={"resourceType": "Patient", "id": pid},
        headers=FHIR_JSON,
    )
    assert r.status_code == 200, r.text
    assert not [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert http.get(f"{stack.fhir}/Patient/{pid}").status_code == 200  # validated, not deleted


def test_mode_delete_reports_a_resource_others_refer_to(stack, http):
    pid = http.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    assert http.post(f"{stack.fhir}/Observation", json=obs, headers=FHIR_JSON).status_code == 201
    r = http.post(
        f"{stack.fhir}/Patient/{pid}/$validate",
        params={"mode": "delete"},
        json={"resourceType": "Patient", "id": pid},
        headers=FHIR_JSON,
    )
    assert r.status_code == 409  # what the delete itself would answer
    assert "at least one resource has a reference to this resource" in r.json()["issue"][0]["diagnostics"]
    assert http.get(f"{stack.fhir}/Patient/{pid}").status_code == 200
