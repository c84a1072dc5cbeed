"""Tenant scoping through the real proxy: one spoke cannot see or change another spoke's Tasks
or the resources they carry, by read, search, _include, _revinclude, paging, history, batch
reads or writes; the hub a Task names sees it."""

import re
import uuid

import pytest
import requests

from tests.support.tenants import (
    HUB,
    ODS,
    SPOKE_A,
    SPOKE_B,
    TASK_ID_SYSTEM,
    spoke_bundle,
    submit,
    task_naming,
)

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MISSING = "987654321"  # an id no test creates


@pytest.fixture(scope="module")
def a(stack):
    return stack.session(client=stack.client("spoke-a", "spoke", SPOKE_A))


@pytest.fixture(scope="module")
def b(stack):
    return stack.session(client=stack.client("spoke-b", "spoke", SPOKE_B))


@pytest.fixture(scope="module")
def hub(stack):
    return stack.session(client=stack.client("hub-h", "hub", HUB))


@pytest.fixture(scope="module")
def a_task(stack, a):
    return submit(stack, a, SPOKE_A)


def test_a_spoke_reads_its_own_task(stack, a, a_task):
    r = a.get(f"{stack.fhir}/Task/{a_task['Task']}")
    assert r.status_code == 200 and r.json()["id"] == a_task["Task"]


def test_another_spoke_reading_the_task_gets_404(stack, b, a_task):
    r = b.get(f"{stack.fhir}/Task/{a_task['Task']}")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert "ETag" not in r.headers


@pytest.mark.parametrize("rtype", ["MedicationRequest", "Patient", "Organization"])
def test_another_spoke_cannot_read_what_the_task_carries(stack, a, b, a_task, rtype):
    assert a.get(f"{stack.fhir}/{rtype}/{a_task[rtype]}").status_code == 200
    assert b.get(f"{stack.fhir}/{rtype}/{a_task[rtype]}").status_code == 404


def test_what_the_owner_just_read_stays_hidden_from_another_spoke(stack, a, b, a_task):
    """The owner's reads fill the read cache; another spoke's read of the same id (then answered
    from that cache unless a write came between) is still judged by tenancy: 404."""
    url = f"{stack.fhir}/Task/{a_task['Task']}"
    assert a.get(url).status_code == 200 and a.get(url).status_code == 200
    r = b.get(url)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    assert a.get(url).status_code == 200


def test_a_missing_id_and_a_hidden_id_answer_alike(stack, b, a_task):
    hidden = b.get(f"{stack.fhir}/Task/{a_task['Task']}")
    missing = b.get(f"{stack.fhir}/Task/no-such-{uuid.uuid4().hex[:8]}")
    assert hidden.status_code == missing.status_code == 404


def test_another_spoke_cannot_vread(stack, b, a_task):
    assert b.get(f"{stack.fhir}/Task/{a_task['Task']}/_history/1").status_code == 404


def test_the_hub_the_task_names_sees_it_and_its_resources(stack, hub, a_task):
    assert hub.get(f"{stack.fhir}/Task/{a_task['Task']}").status_code == 200
    assert hub.get(f"{stack.fhir}/MedicationRequest/{a_task['MedicationRequest']}").status_code == 200


def test_a_hub_the_task_does_not_name_sees_nothing(stack, a_task):
    other = stack.session(client=stack.client("hub-other", "hub", "FH999"))
    assert other.get(f"{stack.fhir}/Task/{a_task['Task']}").status_code == 404


def test_search_by_identifier_is_narrowed_to_the_tenant(stack, a, b, a_task):
    q = {"identifier": f"{TASK_ID_SYSTEM}|{a_task['identifier']}"}
    assert a.get(f"{stack.fhir}/Task", params=q).json()["total"] == 1
    theirs = b.get(f"{stack.fhir}/Task", params=q).json()
    assert theirs.get("total") == 0 and not theirs.get("entry")


def test_post_search_is_narrowed_too(stack, b, a_task):
    r = b.post(f"{stack.fhir}/Task/_search", data={"_id": a_task["Task"]})
    assert r.status_code == 200 and not r.json().get("entry")


def test_another_spokes_patient_is_referenced_as_if_it_did_not_exist(stack, b, a_task):
    bundle, _ = spoke_bundle(SPOKE_B, patient_ref=f"Patient/{a_task['Patient']}")
    theirs = b.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    missing_id = f"{int(a_task['Patient']) + 10**6}"
    bundle, _ = spoke_bundle(SPOKE_B, patient_ref=f"Patient/{missing_id}")
    missing = b.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert theirs.status_code == missing.status_code == 400

    def blank(text, rid):  # HAPI names either search parameter's path of the reference, at random
        return re.sub(r"specified in path: [^\"]*", "", text.replace(rid, "X"))

    assert blank(theirs.text, a_task["Patient"]) == blank(missing.text, missing_id)


def test_include_does_not_pull_in_another_spokes_patient(stack, a, b, a_task):
    # B's own Task points at A's Patient (ids can be guessed); including it must not reveal it
    mine = task_naming(stack, SPOKE_B, a_task["Patient"])
    r = b.get(f"{stack.fhir}/Task", params={"_id": mine, "_include": "Task:patient"})
    types = [e["resource"]["resourceType"] for e in r.json().get("entry", [])]
    assert types == ["Task"]
    # the same search by A (who owns the Patient) but of B's Task finds nothing at all
    assert not a.get(f"{stack.fhir}/Task", params={"_id": mine}).json().get("entry")


def test_revinclude_does_not_pull_in_another_spokes_task(stack, a, b, a_task):
    task_naming(stack, SPOKE_B, a_task["Patient"])
    r = a.get(f"{stack.fhir}/Patient", params={"_id": a_task["Patient"], "_revinclude": "Task:patient"})
    tasks = [e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Task"]
    assert [t["id"] for t in tasks] == [a_task["Task"]]


def test_another_spokes_page_link_shows_nothing_of_theirs(stack, a, b):
    for _ in range(3):
        submit(stack, a, SPOKE_A)
    first = a.get(f"{stack.fhir}/Task", params={"_count": "1"}).json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert a.get(nxt).json()["entry"]  # A pages on through its own Tasks
    stolen = b.get(nxt)
    # as for a paging id the store never issued: the page, its total and its links are A's
    unknown = b.get(nxt.replace(nxt.split("_getpages=")[1].split("&")[0], "no-such-search"))
    assert stolen.status_code == unknown.status_code == 410
    assert SPOKE_A not in stolen.text
    assert stolen.text.replace(nxt.split("_getpages=")[1].split("&")[0], "X") == unknown.text.replace(
        "no-such-search", "X"
    )


def test_history_of_another_spokes_task_answers_as_for_an_unknown_id(stack, b, a_task):
    r = b.get(f"{stack.fhir}/Task/{a_task['Task']}/_history")
    missing = b.get(f"{stack.fhir}/Task/{MISSING}/_history")
    assert r.status_code == missing.status_code == 404
    assert r.text.replace(a_task["Task"], "X") == missing.text.replace(MISSING, "X")


@pytest.mark.parametrize("path", ["Task/_history", "_history"])
def test_type_and_system_history_show_only_the_tenants_own(stack, b, a_task, path):
    r = b.get(f"{stack.fhir}/{path}", params={"_count": "200"})
    ids = {e["resource"]["id"] for e in r.json().get("entry", []) if "resource" in e}
    assert a_task["Task"] not in ids and a_task["Patient"] not in ids


def test_batch_read_of_another_spokes_task_answers_404_in_place(stack, b, a_task):
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Task/{a_task['Task']}"}},
            {"request": {"method": "GET", "url": f"Task?_id={a_task['Task']}"}},
        ],
    }
    r = b.post(stack.fhir, json=batch, headers=FHIR_JSON)
    assert r.status_code == 200
    first, second = r.json()["entry"]
    assert first["response"]["status"].startswith("404") and "resource" not in first
    assert not second["resource"].get("entry")


def test_another_spoke_cannot_update_the_task(stack, b, a, a_task):
    task = a.get(f"{stack.fhir}/Task/{a_task['Task']}").json()
    task["status"] = "cancelled"
    r = b.put(f"{stack.fhir}/Task/{a_task['Task']}", json=task, headers=FHIR_JSON)
    missing = b.put(f"{stack.fhir}/Task/{MISSING}", json={**task, "id": MISSING}, headers=FHIR_JSON)
    # a tenant updates only what is its own; a free id and a taken one answer alike
    assert r.status_code == missing.status_code == 405
    assert r.text.replace(a_task["Task"], "X") == missing.text.replace(MISSING, "X")
    assert a.get(f"{stack.fhir}/Task/{a_task['Task']}").json()["status"] == "requested"


def test_another_spoke_cannot_patch_or_delete_the_task(stack, b, a, a_task):
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    answers = []
    for rid in (a_task["Task"], MISSING):
        r = b.patch(
            f"{stack.fhir}/Task/{rid}",
            json=patch,
            headers={"Content-Type": "application/json-patch+json"},
        )
        d = b.delete(f"{stack.fhir}/Task/{rid}")
        answers.append((r.status_code, r.text.replace(rid, "X"), d.status_code, d.text.replace(rid, "X")))
    assert answers[0] == answers[1]  # exactly as for an id that does not exist
    assert a.get(f"{stack.fhir}/Task/{a_task['Task']}").json()["meta"]["versionId"] == "1"


def test_a_transaction_cannot_patch_another_spokes_task(stack, b, a, a_task):
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Task.status"},
                    {"name": "value", "valueCode": "cancelled"},
                ],
            }
        ],
    }

    def attempt(rid):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": patch, "request": {"method": "PATCH", "url": f"Task/{rid}"}}],
        }
        r = b.post(stack.fhir, json=bundle, headers=FHIR_JSON)
        return r.status_code, r.text.replace(rid, "X")

    theirs, missing = attempt(a_task["Task"]), attempt(MISSING)
    assert theirs == missing and theirs[0] == 404
    assert a.get(f"{stack.fhir}/Task/{a_task['Task']}").json()["status"] == "requested"


def test_conditional_update_by_another_spoke_never_touches_the_task(stack, b, a, a_task):
    q = f"identifier={TASK_ID_SYSTEM}|{a_task['identifier']}"
    own, _ = spoke_bundle(SPOKE_B)
    task = own["entry"][0]["resource"]
    task["requester"] = {"identifier": {"system": ODS, "value": SPOKE_B}}
    task = {k: v for k, v in task.items() if k not in ("focus", "for", "input")}  # no bundle to resolve
    task["identifier"] = [{"system": TASK_ID_SYSTEM, "value": a_task["identifier"]}]  # A's
    r = b.put(f"{stack.fhir}/Task?{q}", json=task, headers=FHIR_JSON)
    assert r.status_code == 201, r.text  # no match among B's own: a new Task of B's
    assert a.get(f"{stack.fhir}/Task/{a_task['Task']}").json()["meta"]["versionId"] == "1"


def test_conditional_create_does_not_answer_another_spokes_resource(stack, b, a_task):
    q = f"identifier={TASK_ID_SYSTEM}|{a_task['identifier']}"
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "requester": {"identifier": {"system": ODS, "value": SPOKE_B}},
        "identifier": [{"system": TASK_ID_SYSTEM, "value": a_task["identifier"]}],  # A's
    }
    r = b.post(f"{stack.fhir}/Task", json=task, headers={**FHIR_JSON, "If-None-Exist": q})
    # B's own match (an earlier test may have made one) or a new Task of B's: never A's
    assert r.status_code in (200, 201), r.text
    assert a_task["Task"] not in r.headers["Location"]


def test_a_task_must_name_the_writers_organisation(stack, b):
    bundle, _ = spoke_bundle(SPOKE_A)  # B sends a Task whose requester is A
    r = b.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 403
    assert r.json()["issue"][0]["expression"][0].startswith("Bundle.entry[0].resource")


def test_tenant_labels_sent_by_a_client_are_replaced(stack, a, b):
    patient = {
        "resourceType": "Patient",
        "meta": {"security": [{"system": "https://fhirplug.org/fhir/CodeSystem/tenant", "code": SPOKE_B}]},
    }
    r = a.post(f"{stack.fhir}/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 201
    pid = r.headers["Location"].split("/")[-3]
    assert b.get(f"{stack.fhir}/Patient/{pid}").status_code == 404
    assert a.get(f"{stack.fhir}/Patient/{pid}").status_code == 200


def test_a_patch_may_not_touch_meta(stack, a, a_task):
    patch = [{"op": "add", "path": "/meta/security/-", "value": {"code": "x"}}]
    r = a.patch(
        f"{stack.fhir}/Task/{a_task['Task']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 403


def test_a_spoke_may_not_run_data_operations(stack, a, a_task):
    r = a.get(f"{stack.fhir}/Patient/{a_task['Patient']}/$everything")
    assert r.status_code == 403


def test_a_spoke_may_validate(stack, a):
    r = a.post(f"{stack.fhir}/Patient/$validate", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome"


def test_reader_reads_everything_and_writes_nothing(stack, a_task):
    reader = stack.session(client=stack.client("reader-r", "reader"))
    assert reader.get(f"{stack.fhir}/Task/{a_task['Task']}").status_code == 200
    r = reader.post(f"{stack.fhir}/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON)
    assert r.status_code == 403


def test_validator_reads_no_clinical_data(stack, a_task):
    validator = stack.session(client=stack.client("validator-v", "validator"))
    assert validator.get(f"{stack.fhir}/Task/{a_task['Task']}").status_code == 403


def test_without_a_token_nothing_is_visible(stack, anon, a_task):
    assert anon.get(f"{stack.fhir}/Task/{a_task['Task']}").status_code == 401
    assert requests.get(f"{stack.fhir}/metadata").status_code == 200
