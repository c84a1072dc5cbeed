"""Hub-and-spoke dispensing on one deployment (the test stack is hub FA565; the spoke VNE51 calls
it): intake exactly once, the Task state machine with who acts, the dispense return, audit."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import messages
from tests.support.messages import RFC4122, Case

pytestmark = pytest.mark.integration
HUB, SPOKE = "FA565", "VNE51"
MESSAGE_ID_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/message-identifier"
FHIR_JSON, JSON_PATCH = messages.FHIR_JSON, messages.JSON_PATCH


@pytest.fixture(scope="module")
def spoke(stack):
    return stack.session(client=stack.client("hs-spoke", "spoke", SPOKE))


@pytest.fixture(scope="module")
def hub(stack):
    return stack.session(client=stack.client("hs-hub", "hub", HUB))


def move(stack, session, task_id: str, status: str, **extra):
    return messages.move(stack.fhir, session, task_id, status, **extra)


def task(stack, session, task_id):
    return session.get(f"{stack.fhir}/Task/{task_id}").json()


def test_intake_answers_201_and_makes_the_task_the_hubs(stack, spoke, hub):
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    del bundle["entry"][0]["resource"]["owner"]  # the spoke may leave the owner to the hub
    r = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    tid = next(
        e["response"]["location"].split("/")[1] for e in r.json()["entry"] if "Task/" in str(e["response"])
    )
    stored = task(stack, hub, tid)
    assert stored["owner"]["identifier"]["value"] == HUB
    assert {"system": MESSAGE_ID_SYSTEM, "value": f"{SPOKE}/{case.message}"} in stored["identifier"]


def test_the_answer_has_one_entry_per_entry_sent_in_order_and_no_bundle_location(stack, spoke, http):
    """The proxy adds entries of its own (the audit event, the outbox record): they are not the
    caller's, and HAPI's Location names a response Bundle it never stored."""
    bundle = Case().load("valid-spoke-to-hub.json")
    r = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    answered = r.json()["entry"]
    assert len(answered) == len(bundle["entry"])
    sent_types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert [e["response"]["location"].split("/")[0] for e in answered] == sent_types
    location = r.headers.get("Location") or r.headers.get("Content-Location")
    assert location is None or "/Bundle/" not in location, location


def test_a_resubmission_answers_the_first_result_and_stores_nothing(stack, spoke, http):
    bundle = Case().load("valid-spoke-to-hub.json")
    first = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert first.status_code == 201, first.text
    again = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)  # the same message, sent again
    assert again.status_code == 201 and again.json() == first.json()
    task_identifier = bundle["entry"][0]["resource"]["identifier"][0]["value"]
    found = http.get(f"{stack.fhir}/Task", params={"identifier": f"{RFC4122}|{task_identifier}"}).json()
    assert found["total"] == 1


def test_concurrent_copies_store_one_task(stack, spoke, http):
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON), range(6)))
    assert {a.status_code for a in answers} == {201}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    found = http.get(f"{stack.fhir}/Task", params={"identifier": f"{RFC4122}|{case.task_identifier}"}).json()
    assert found["total"] == 1


def test_the_same_identifier_with_other_content_is_a_conflict(stack, spoke):
    case = Case()
    case.submit(stack.fhir, spoke)
    other = case.load("valid-spoke-to-hub.json")
    other["entry"][0]["resource"]["description"] = "something else"
    r = spoke.post(stack.fhir, json=other, headers=FHIR_JSON)
    assert r.status_code == 409 and r.json()["issue"][0]["expression"] == ["Bundle.identifier"]


def test_a_message_without_an_identifier_is_refused(stack, spoke):
    bundle = Case().load("valid-spoke-to-hub.json")
    del bundle["identifier"]
    r = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle.identifier"]


def test_the_whole_flow_ends_with_the_task_completed_and_the_prescription_completed(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    tid = case.ids["Task"]
    assert move(stack, hub, tid, "accepted").status_code == 200
    progress = move(stack, hub, tid, "in-progress", businessStatus={"text": "assembling"})
    assert progress.status_code == 200, progress.text
    r = hub.post(stack.fhir, json=case.load("valid-hub-to-spoke.json"), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    done = task(stack, spoke, tid)
    assert done["status"] == "completed"
    dispenses = spoke.get(
        f"{stack.fhir}/MedicationDispense", params={"prescription": case.ids["MedicationRequest"]}
    )
    assert dispenses.json()["total"] == 1
    mr = spoke.get(f"{stack.fhir}/MedicationRequest/{case.ids['MedicationRequest']}").json()
    assert mr["status"] == "completed"
    events = spoke.get(f"{stack.fhir}/AuditEvent", params={"entity": f"Task/{tid}", "_count": "50"}).json()
    handoffs = sorted(e["resource"]["subtype"][0]["code"] for e in events.get("entry", []))
    assert handoffs == ["accepted", "dispensed", "progressed", "received"]


def test_the_reject_path_and_nothing_after_it(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    tid = case.ids["Task"]
    r = move(stack, hub, tid, "rejected", statusReason={"text": "out of stock"})
    assert r.status_code == 200, r.text
    later = move(stack, hub, tid, "in-progress")
    assert later.status_code == 409 and "rejected" in later.json()["issue"][0]["diagnostics"]


def test_the_failed_path(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    tid = case.ids["Task"]
    move(stack, hub, tid, "accepted")
    move(stack, hub, tid, "in-progress")
    r = hub.post(stack.fhir, json=case.load("valid-hub-to-spoke-failed.json"), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    assert task(stack, spoke, tid)["status"] == "failed"
    mr = spoke.get(f"{stack.fhir}/MedicationRequest/{case.ids['MedicationRequest']}").json()
    assert mr["status"] == "active"  # nothing was dispensed


def test_an_illegal_transition_is_409_naming_both_states(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    r = move(stack, hub, case.ids["Task"], "completed")
    assert r.status_code == 409
    diag = r.json()["issue"][0]["diagnostics"]
    assert "requested" in diag and "completed" in diag


def test_the_requester_may_not_accept_but_may_cancel(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    tid = case.ids["Task"]
    assert move(stack, spoke, tid, "accepted").status_code == 403
    assert move(stack, spoke, tid, "cancelled").status_code == 200
    assert move(stack, hub, tid, "accepted").status_code == 409


def test_the_owner_may_not_change_who_the_task_is_for(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    patch = [{"op": "replace", "path": "/for", "value": {"display": "someone else"}}]
    r = hub.patch(f"{stack.fhir}/Task/{case.ids['Task']}", json=patch, headers=JSON_PATCH)
    assert r.status_code == 403 and "Task.for" in r.json()["issue"][0]["expression"]


def test_an_unknown_task_is_404(stack, hub):
    assert move(stack, hub, f"nope{uuid.uuid4().hex[:8]}", "accepted").status_code == 404


def test_a_stale_version_is_412(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    tid = case.ids["Task"]
    move(stack, hub, tid, "accepted")  # now version 2
    patch = [{"op": "replace", "path": "/status", "value": "in-progress"}]
    r = hub.patch(f"{stack.fhir}/Task/{tid}", json=patch, headers={**JSON_PATCH, "If-Match": 'W/"1"'})
    assert r.status_code == 412


def test_a_dispense_for_a_task_that_is_not_here_is_refused(stack, hub, spoke):
    case = Case()
    bundle = case.load("valid-hub-to-spoke.json")  # its Task was never submitted
    r = hub.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert r.status_code in (404, 422)
    assert r.json()["resourceType"] == "OperationOutcome"


def test_fhirpath_patch_moves_the_task_too(stack, spoke, hub):
    case = Case()
    case.submit(stack.fhir, spoke)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Task.status"},
                    {"name": "value", "valueCode": "accepted"},
                ],
            }
        ],
    }
    r = hub.patch(f"{stack.fhir}/Task/{case.ids['Task']}", json=params, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert task(stack, hub, case.ids["Task"])["status"] == "accepted"


def test_audit_events_are_found_by_client(stack, spoke, http):
    case = Case()
    case.submit(stack.fhir, spoke)
    r = http.get(f"{stack.fhir}/AuditEvent", params={"altid": "hs-spoke", "subtype": "received"})
    assert r.json()["total"] >= 1
    assert requests.get(f"{stack.fhir}/AuditEvent").status_code == 401
