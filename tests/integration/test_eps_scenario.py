"""EPS's shared primary-care scenario, driven in order through the real operations on the real stack.

The prescriber sends the signed prescription (`$process-message`, prescription-order); its
nominated pharmacy pulls its queue (`Task/$release`, nominated); the pharmacy reports the
medicines dispensed (`$process-message`, dispense-notification); and, for the scenario's second
prescription, the cancellation pair (send, then prescription-order-update). Every answer and the
stored state after each step is checked: the tracking Task's business status, the
MedicationRequests' status, and who can see them.

The shared messages are EPS's own examples. Their signatures are placeholders, so each prescription
is signed anew with the TEST ONLY prescriber key (the test stack trusts its CA), and each gets
fresh ids (message and short-form ids with a valid check character) so that the scenario can run
in a store other tests share. The nominated pharmacy is made unique to this test: a nominated
release hands out the oldest prescriptions first, and others in the store are not this test's.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
import requests

from eps.records import BusinessStatus, business_status
from tests.support import eps_messages
from tests.support.eps_lifecycle import example, notification

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PRESCRIBER = eps_messages.PRESCRIBER_ODS  # A83008, the scenario's surgery
RELEASE = "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Task-Request-Release-200_OK.json"
CANCELLATIONS = "primary-care__acute__nominated-pharmacy__medical-prescriber__cancellations__"
CANCEL_SEND = CANCELLATIONS + "1-Process-Request-Send-200_OK.json"
CANCEL = CANCELLATIONS + "1-Process-Request-Cancel-200_OK.json"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


@pytest.fixture(scope="module")
def parties(stack):
    pharmacy = "FS" + uuid.uuid4().hex[:4].upper()  # this test's own nominated pharmacy
    made = {
        "gp": stack.client("scenario-gp", "prescriber", PRESCRIBER),
        "pharmacy": stack.client(f"scenario-pharmacy-{pharmacy}", "dispenser", pharmacy),
        "other-pharmacy": stack.client("scenario-other-pharmacy", "dispenser", "FX999"),
    }
    sessions = {name: stack.session(client=client) for name, client in made.items()}
    yield pharmacy, sessions
    for s in sessions.values():
        s.close()


def prescription(name: str, pharmacy: str) -> dict:
    """The shared prescription with fresh ids, nominated to ``pharmacy``, signed anew."""
    bundle = eps_messages.fresh(name, sign=False)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "MedicationRequest":
            resource["dispenseRequest"]["performer"] = {
                "identifier": {"system": ODS_SYSTEM, "value": pharmacy}
            }
        if resource["resourceType"] == "MessageHeader":
            for destination in resource.get("destination") or []:
                destination["receiver"] = {"identifier": {"system": ODS_SYSTEM, "value": pharmacy}}
    return eps_messages.signed(bundle)


def process_message(stack, session: requests.Session, message: dict) -> tuple[int, dict, dict]:
    """(HTTP status, MessageHeader.response, the OperationOutcome or {}) of a synchronous exchange."""
    data = json.dumps(message, default=str).encode()
    r = session.post(f"{stack.fhir}/$process-message", data=data, headers=FHIR_JSON, timeout=60)
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "message", r.text
    outcome = next(
        (e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "OperationOutcome"), {}
    )
    return r.status_code, body["entry"][0]["resource"]["response"], outcome


def tracking_task(stack, session: requests.Session, short_id: str) -> dict:
    r = session.get(
        f"{stack.fhir}/Task", params={"group-identifier": short_id}, headers=FHIR_JSON, timeout=30
    )
    assert r.status_code == 200, r.text
    tasks = [e["resource"] for e in r.json().get("entry") or [] if e["resource"]["resourceType"] == "Task"]
    assert len(tasks) == 1, f"one tracking Task for {short_id}, found {len(tasks)}"
    return tasks[0]


def medication_requests(stack, session: requests.Session, message: dict) -> list[dict]:
    out = []
    for line in line_items(message):
        r = session.get(
            f"{stack.fhir}/MedicationRequest", params={"identifier": line}, headers=FHIR_JSON, timeout=30
        )
        assert r.status_code == 200, r.text
        out += [e["resource"] for e in r.json().get("entry") or []]
    return out


def line_items(message: dict) -> list[str]:
    return [
        e["resource"]["identifier"][0]["value"]
        for e in message["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
    ]


def test_send_release_dispense_and_the_cancellation_pair(stack, parties):
    pharmacy, s = parties

    # 1. the prescriber sends the signed prescription
    sent = prescription(eps_messages.SEND, pharmacy)
    short_id = eps_messages.short_id_of(sent)
    status, response, outcome = process_message(stack, s["gp"], sent)
    assert (status, response["code"], response["identifier"]) == (200, "ok", sent["id"]), outcome
    task = tracking_task(stack, s["gp"], short_id)
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED
    assert task["owner"]["identifier"]["value"] == pharmacy
    assert {r["status"] for r in medication_requests(stack, s["gp"], sent)} == {"active"}
    # another pharmacy sees nothing of it
    r = s["other-pharmacy"].get(f"{stack.fhir}/Task", params={"group-identifier": short_id}, timeout=30)
    assert r.status_code == 200 and not r.json().get("entry")

    # 2. the nominated pharmacy releases its queue: EPS's release request, as this pharmacy, and
    # without its group-identifier (which names one prescription: a patient release); that is
    # EPS's nominated download
    release = copy.deepcopy(example(RELEASE))
    release["parameter"] = [p for p in release["parameter"] if p["name"] != "group-identifier"]
    owner = next(p for p in release["parameter"] if p["name"] == "owner")
    owner["resource"]["identifier"][0]["value"] = pharmacy
    r = s["pharmacy"].post(f"{stack.fhir}/Task/$release", json=release, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 200, r.text
    released = r.json()
    assert released["resourceType"] == "Bundle" and released["type"] == "searchset"
    messages = [e["resource"] for e in released.get("entry") or []]
    assert [eps_messages.short_id_of(m) for m in messages] == [short_id]
    assert messages[0]["identifier"] == sent["identifier"]  # the prescription as the prescriber signed it
    assert business_status(tracking_task(stack, s["pharmacy"], short_id)) is BusinessStatus.WITH_DISPENSER
    # released once: the queue is empty now
    r = s["pharmacy"].post(f"{stack.fhir}/Task/$release", json=release, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 200 and not r.json().get("entry"), r.text

    # 3. the pharmacy reports every item fully dispensed (EPS's dispense-notification example)
    dispensed = notification(short_id, sent["id"], dict.fromkeys(line_items(sent), "0001"))
    status, response, outcome = process_message(stack, s["pharmacy"], dispensed)
    assert (status, response["code"]) == (200, "ok"), outcome
    assert business_status(tracking_task(stack, s["pharmacy"], short_id)) is BusinessStatus.DISPENSED
    assert {r["status"] for r in medication_requests(stack, s["gp"], sent)} == {"completed"}
    # a prescriber does not dispense
    r = s["gp"].post(f"{stack.fhir}/$process-message", json=dispensed, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 403

    # 4. the cancellation pair: its prescription is sent, then cancelled by the same prescriber
    to_cancel = prescription(CANCEL_SEND, pharmacy)
    cancel_id = eps_messages.short_id_of(to_cancel)
    status, response, outcome = process_message(stack, s["gp"], to_cancel)
    assert (status, response["code"]) == (200, "ok"), outcome
    cancel = copy.deepcopy(example(CANCEL))
    cancel["id"], cancel["identifier"]["value"] = str(uuid.uuid4()), str(uuid.uuid4())
    request = next(
        e["resource"] for e in cancel["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    request["groupIdentifier"]["value"] = cancel_id
    request["identifier"][0]["value"] = line_items(to_cancel)[0]
    status, response, outcome = process_message(stack, s["gp"], cancel)
    assert (status, response["code"]) == (200, "ok"), outcome
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "R-0001"  # EPS: prescription/item cancelled
    assert business_status(tracking_task(stack, s["gp"], cancel_id)) is BusinessStatus.CANCELLED
    assert {r["status"] for r in medication_requests(stack, s["gp"], to_cancel)} == {"cancelled"}
    # a cancelled prescription is in no pharmacy's queue
    r = s["pharmacy"].post(f"{stack.fhir}/Task/$release", json=release, headers=FHIR_JSON, timeout=60)
    assert r.status_code == 200 and not r.json().get("entry"), r.text
