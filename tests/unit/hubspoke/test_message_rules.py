"""Hub-and-spoke message shape rules and classification, as pure functions."""

import base64
import copy
import json
from pathlib import Path

import pytest

from hubspoke.message_rules import check
from hubspoke.messages import classify

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def find(problems, fragment):
    """The one problem whose diagnostics contain ``fragment``."""
    found = [p for p in problems if fragment in p[0]]
    assert len(found) == 1, problems
    return found[0]


# ---------------------------------------------------------------- valid examples

VALID = {
    "valid-spoke-to-hub": "spoke-to-hub",
    "valid-spoke-to-hub-two-items": "spoke-to-hub",
    "valid-spoke-to-hub-two-patients": "spoke-to-hub",
    "valid-hub-to-spoke": "hub-to-spoke",
    "valid-hub-to-spoke-two-items": "hub-to-spoke",
    "valid-hub-to-spoke-failed": "hub-to-spoke",
}


def test_every_valid_example_is_listed():
    assert {p.stem for p in EXAMPLES.glob("valid-*.json")} == set(VALID)


@pytest.mark.parametrize("name,kind", sorted(VALID.items()))
def test_valid_examples_pass_and_classify(name, kind):
    bundle = example(name)
    assert classify(bundle) == kind
    assert check(bundle) == []


@pytest.mark.parametrize("name,kind", sorted(VALID.items()))
def test_valid_examples_classify_by_content_without_the_profile(name, kind):
    bundle = example(name)
    del bundle["meta"]
    assert classify(bundle) == kind
    assert check(bundle) == []


def test_a_versioned_profile_still_classifies():
    bundle = example("valid-hub-to-spoke")
    bundle["meta"]["profile"] = [bundle["meta"]["profile"][0] + "|0.1.0"]
    assert classify(bundle) == "hub-to-spoke"


# ---------------------------------------------------------------- invalid examples (the plugin's rules)

# file -> (diagnostics fragment, expressions), for the files whose README row says "400 (plugin)"
PLUGIN_INVALID = {
    "invalid-spoke-to-hub-bad-nhs-number": (
        "NHS Number is not valid",
        ["Bundle.entry[2].resource.identifier[0].value"],
    ),
    "invalid-spoke-to-hub-task-status-not-requested": (
        "Task.status must be requested",
        ["Bundle.entry[0].resource.status"],
    ),
    "invalid-spoke-to-hub-reference-by-id-not-fullurl": (
        "reference by id, use the entry's fullUrl urn:uuid:29356196-1c07-4057-a7f3-e8d9b7e20926",
        ["Bundle.entry[0].resource.input[0].valueReference.reference"],
    ),
    "invalid-spoke-to-hub-unresolved-reference": (
        "urn:uuid:78d3c2eb-009e-4ec8-a358-b042954aa9b3 does not resolve",
        ["Bundle.entry[1].resource.subject.reference"],
    ),
    "invalid-spoke-to-hub-patient-without-birthdate": (
        "must have a birthDate",
        ["Bundle.entry[2].resource.birthDate"],
    ),
    "invalid-hub-to-spoke-task-status-in-progress": (
        "must set Task.status to completed or failed: it sets in-progress",
        ["Bundle.entry[0].resource.parameter[0].part[2].valueCode"],
    ),
    "invalid-hub-to-spoke-patch-url-without-criteria": (
        "the Task to update must be named: Task/<id> or Task?identifier=system|value",
        ["Bundle.entry[0].request.url"],
    ),
}

# the slice cardinalities the profiles check too; the plugin repeats them (rules 1 and 2)
CARDINALITY_INVALID = {
    "invalid-spoke-to-hub-no-task": ("exactly one Task: found none", ["Bundle.entry"]),
    "invalid-spoke-to-hub-two-tasks": ("exactly one Task: found 2", ["Bundle.entry[0]", "Bundle.entry[1]"]),
    "invalid-spoke-to-hub-no-organization": ("exactly one Organization: found none", ["Bundle.entry"]),
    "invalid-spoke-to-hub-no-medicationrequest": (
        "at least one MedicationRequest: found none",
        ["Bundle.entry"],
    ),
    "invalid-spoke-to-hub-no-patient": ("at least one Patient: found none", ["Bundle.entry"]),
    "invalid-hub-to-spoke-no-medicationdispense": (
        "at least one MedicationDispense: found none",
        ["Bundle.entry"],
    ),
    "invalid-hub-to-spoke-no-organization": ("exactly one Organization: found none", ["Bundle.entry"]),
}


@pytest.mark.parametrize("name", sorted(PLUGIN_INVALID | CARDINALITY_INVALID))
def test_invalid_examples_break_their_one_rule(name):
    fragment, expressions = (PLUGIN_INVALID | CARDINALITY_INVALID)[name]
    bundle = example(name)
    assert classify(bundle) == ("spoke-to-hub" if "spoke-to-hub" in name else "hub-to-spoke")
    problems = check(bundle)
    at = [p for p in problems if p[1] == expressions]
    assert len(at) == 1, problems
    diagnostics = at[0][0]
    assert fragment in diagnostics
    others = [p for p in problems if p is not at[0]]
    if name == "invalid-spoke-to-hub-bad-nhs-number":  # the same number again, in ifNoneExist
        assert others == [(diagnostics + " (ifNoneExist)", ["Bundle.entry[2].request.ifNoneExist"])]
    else:
        assert others == []  # each file breaks one rule only


def test_every_plugin_example_in_the_readme_is_covered():
    readme = (EXAMPLES / "README.md").read_text()
    plugin_rows = {
        line.split("`")[1].removesuffix(".json")
        for line in readme.splitlines()
        if line.startswith("| `") and "400 (plugin)" in line
    }
    assert plugin_rows == set(PLUGIN_INVALID)


@pytest.mark.parametrize(
    "name",
    [
        "invalid-spoke-to-hub-bundle-type-batch",
        "invalid-spoke-to-hub-medicationrequest-without-substitution",
        "invalid-spoke-to-hub-entry-without-request",
    ],
)
def test_profile_only_examples_do_not_trip_the_plugin(name):
    check(example(name))  # the profile's job; here it only has to be read without error


def test_nhs_numbers_in_logical_references_are_checked():
    bundle = example("invalid-spoke-to-hub-no-patient")  # MedicationRequest.subject by NHS Number
    bundle["entry"][1]["resource"]["subject"]["identifier"]["value"] = "9449304131"
    diagnostics, where = find(check(bundle), "NHS Number")
    assert where == ["Bundle.entry[1].resource.subject.identifier.value"]


def test_nhs_number_in_if_none_exist_alone():
    bundle = example("valid-spoke-to-hub")
    bundle["entry"][2]["request"]["ifNoneExist"] = "identifier=https://fhir.nhs.uk/Id/nhs-number%7C9449304131"
    assert check(bundle) == [
        (
            "NHS Number is not valid: 10 digits passing the Modulus 11 check (ifNoneExist)",
            ["Bundle.entry[2].request.ifNoneExist"],
        )
    ]


# ---------------------------------------------------------------- what is not a hub-and-spoke message


def two_patients() -> dict:
    patient = example("valid-spoke-to-hub")["entry"][2]
    other = copy.deepcopy(patient)
    other["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    other["resource"]["identifier"][0]["value"] = "9449304131"  # would fail, were it checked
    return {"resourceType": "Bundle", "type": "transaction", "entry": [patient, other]}


def test_other_transactions_are_ignored():
    bundle = two_patients()
    assert classify(bundle) is None
    assert check(bundle) == []


def test_content_classifies_transactions_only():
    bundle = example("valid-spoke-to-hub")
    del bundle["meta"]
    bundle["type"] = "batch"
    assert classify(bundle) is None
    assert classify({"resourceType": "Patient"}) is None
    assert classify(None) is None


def test_a_task_without_medication_is_not_hub_spoke():
    bundle = example("valid-spoke-to-hub")
    del bundle["meta"]
    del bundle["entry"][1]  # no MedicationRequest, no MedicationDispense
    assert classify(bundle) is None


# ---------------------------------------------------------------- further rules, synthetic


def hub_to_spoke(patch_resource=None, url=None) -> dict:
    bundle = example("valid-hub-to-spoke")
    if patch_resource is not None:
        bundle["entry"][0]["resource"] = patch_resource
    if url is not None:
        bundle["entry"][0]["request"]["url"] = url
    return bundle


def binary_patch(ops) -> dict:
    data = base64.b64encode(json.dumps(ops).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_json_patch_to_completed_or_failed_passes(status):
    bundle = hub_to_spoke(binary_patch([{"op": "replace", "path": "/status", "value": status}]))
    assert check(bundle) == []


def test_a_json_patch_to_another_status_fails():
    bundle = hub_to_spoke(binary_patch([{"op": "add", "path": "/status", "value": "in-progress"}]))
    diagnostics, where = find(check(bundle), "/status")
    assert "it sets in-progress" in diagnostics
    assert where == ["Bundle.entry[0].resource.data"]


def test_a_json_patch_references_resolve():
    ops = [
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output/-", "value": {"valueReference": {"reference": "urn:uuid:nowhere"}}},
    ]
    diagnostics, where = find(check(hub_to_spoke(binary_patch(ops))), "does not resolve")
    assert where == ["Bundle.entry[0].resource.data"]


def test_an_unreadable_json_patch_fails():
    bundle = hub_to_spoke(
        {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!"}
    )
    assert find(check(bundle), "not a readable JSON Patch")[1] == ["Bundle.entry[0].resource.data"]


def test_fhirpath_patch_add_status_passes():
    bundle = hub_to_spoke()
    bundle["entry"][0]["resource"]["parameter"][0]["part"] = [
        {"name": "type", "valueCode": "add"},
        {"name": "path", "valueString": "Task"},
        {"name": "name", "valueString": "status"},
        {"name": "value", "valueCode": "failed"},
    ]
    assert check(bundle) == []


def test_a_patch_that_never_sets_the_status_fails():
    bundle = hub_to_spoke()
    del bundle["entry"][0]["resource"]["parameter"][0]
    diagnostics, where = find(check(bundle), "must set Task.status")
    assert where == ["Bundle.entry[0].resource"]


def test_references_inside_patch_values_resolve():
    bundle = hub_to_spoke()
    value = bundle["entry"][0]["resource"]["parameter"][1]["part"][3]["part"][1]["valueReference"]
    value["reference"] = "urn:uuid:312d757e-21f1-4f10-9f02-1746768bc31e"
    diagnostics, where = find(check(bundle), "does not resolve")
    assert where == ["Bundle.entry[0].resource.parameter[1].part[3].part[1].valueReference.reference"]


@pytest.mark.parametrize(
    "url",
    ["Task/6b1f", "Task?identifier=https://tools.ietf.org/html/rfc4122|0f8c2e6a-3d4b-4c1e-9f7a-5b2d8e1c6a94"],
)
def test_a_named_task_patch_passes(url):
    assert check(hub_to_spoke(url=url)) == []


@pytest.mark.parametrize("url", ["Task", "Task?", "Task/"])
def test_a_bare_task_patch_is_refused(url):
    diagnostics, where = find(check(hub_to_spoke(url=url)), "the Task to update must be named")
    assert where == ["Bundle.entry[0].request.url"]


def test_a_hub_task_put_must_end_completed_or_failed():
    bundle = hub_to_spoke()
    task = {"resourceType": "Task", "id": "6b1f", "status": "in-progress", "intent": "order"}
    bundle["entry"][0] = {"fullUrl": "urn:uuid:d9e4b2a7", "resource": task}
    bundle["entry"][0]["request"] = {"method": "PUT", "url": "Task/6b1f"}
    del bundle["meta"]
    assert classify(bundle) == "hub-to-spoke"
    diagnostics, where = find(check(bundle), "Task.status must be completed or failed")
    assert where == ["Bundle.entry[0].resource.status"]
    task["status"] = "completed"
    assert check(bundle) == []


def test_a_task_patch_and_a_task_resource_are_two_tasks():
    bundle = hub_to_spoke()
    task = {"resourceType": "Task", "status": "completed", "intent": "order"}
    bundle["entry"].append(
        {"fullUrl": "urn:uuid:x", "resource": task, "request": {"method": "POST", "url": "Task"}}
    )
    diagnostics, where = find(check(bundle), "found 2")
    assert where == ["Bundle.entry[0]", "Bundle.entry[3]"]


def test_two_organizations_are_refused():
    bundle = example("valid-spoke-to-hub")
    org = copy.deepcopy(bundle["entry"][3])
    org["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000002"
    bundle["entry"].append(org)
    assert check(bundle) == [
        (
            "A spoke-to-hub Bundle must contain exactly one Organization: found 2",
            ["Bundle.entry[3]", "Bundle.entry[4]"],
        )
    ]


def test_each_missing_patient_element_is_reported():
    bundle = example("valid-spoke-to-hub")
    patient = bundle["entry"][2]["resource"]
    del patient["name"]
    patient["address"] = []
    assert [w for _, w in check(bundle)] == [
        ["Bundle.entry[2].resource.name"],
        ["Bundle.entry[2].resource.address"],
    ]


def test_relative_references_outside_the_bundle_and_logical_references_pass():
    bundle = example("valid-spoke-to-hub")
    task = bundle["entry"][0]["resource"]
    task["basedOn"] = [{"reference": "ServiceRequest/abc"}, {"reference": "MedicationRequest/other-id"}]
    task["encounter"] = {"identifier": {"system": "https://example.org/enc", "value": "1"}}
    assert check(bundle) == []


def test_reference_by_resource_id_is_caught():
    bundle = example("valid-spoke-to-hub")
    bundle["entry"][2]["resource"]["id"] = "p1"
    bundle["entry"][0]["resource"]["for"]["reference"] = "Patient/p1"
    diagnostics, where = find(check(bundle), "reference by id")
    assert where == ["Bundle.entry[0].resource.for.reference"]
    assert "urn:uuid:78d3c2eb-009e-4ec8-a358-b042954aa9b2" in diagnostics
