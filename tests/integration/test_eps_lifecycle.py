"""The prescription lifecycle after it is stored, on the real stack (HAPI, its tenancy line, Redis,
the proxy): return and withdraw through ``POST /fhir/Task`` as a pharmacy; cancellation and
dispense notification through their ``$process-message`` handlers on the real store.

Prescriptions are made as the prescriber would have them stored (``eps.records``' transaction,
sent to the store signed as the prescriber, from EPS's Send example with fresh ids) and released
as a release leaves them (the tracking Task WITH_DISPENSER, owned and every part labelled for
the pharmacy), so these tests stand on their own.

Cancellation and dispense-notification go through ``POST /fhir/$process-message`` (the
dispatcher, ``plugins/eps_messaging.py``); some of their cases (refusals, races, the withdraw and
return that follow a dispense) call the handlers directly with a store client that is what the
dispatcher hands them (signed for the caller, fenced, tenancy applied by the store), and judge
what they stored through the proxy and the store as usual.
"""

from __future__ import annotations

import copy
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from redis import Redis

from eps import cancel, dispense
from eps import lifecycle as lc
from eps.events import Sender
from eps.records import (
    PRESCRIPTION_ID_SYSTEM,
    BusinessStatus,
    business_status,
    labelled,
    message_key,
    owner_ods,
    prescription_transaction,
    tenant_labels,
    with_status,
)
from hubspoke.identifiers import TENANT_SYSTEM
from proxy.errors import FhirError
from proxy.read_cache import WriteFence
from proxy.store_caller import HEADER, CallerSigner
from tests.support.eps import new_short_form_id
from tests.support.eps_lifecycle import CANCEL, RETURN, SEND, WITHDRAW, example, notification

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
PRESCRIBER, NOMINATED, PATIENT_CHOICE, STRANGER = "A83008", "FA565", "VNE51", "ZZ999"
NHS_NUMBER = "9449305552"


class SignedStore:
    """The EPS handlers' store protocol straight onto the store: each request signed for one
    caller (the store's tenancy line applies), each write inside the read cache's write fence.
    What the dispatcher gives a handler is the same thing through the proxy's own store client."""

    def __init__(self, base: str, redis: Redis, role: str = "admin", ods: str = ""):
        self.base, self.redis, self.role, self.ods = base.rstrip("/"), redis, role, ods
        self.http = requests.Session()
        self.signer = CallerSigner.from_env()
        self.fence = WriteFence(redis, 120.0)

    def as_caller(self, role: str, ods: str | None) -> SignedStore:
        return SignedStore(self.base, self.redis, role, ods or "")

    def _send(self, method: str, path: str = "", **kwargs) -> tuple[int, dict | None]:
        headers = {**FHIR_JSON, HEADER: self.signer.header(self.role, self.ods), **kwargs.pop("headers", {})}
        url = f"{self.base}/{path}" if path else self.base
        if method == "GET":
            r = self.http.request(method, url, headers=headers, timeout=30, **kwargs)
        else:
            with self.fence.write():
                r = self.http.request(method, url, headers=headers, timeout=30, **kwargs)
        if r.status_code >= 500:
            raise FhirError.unavailable(f"store {r.status_code}")
        return r.status_code, (r.json() if r.content else None)

    def read(self, resource_type: str, resource_id: str) -> dict | None:
        status, body = self._send("GET", f"{resource_type}/{resource_id}")
        return body if status == 200 else None

    def search(self, resource_type: str, query, count: int = 200) -> list[dict]:
        params = [*(query if isinstance(query, list) else []), ("_count", str(count))]
        status, body = self._send("GET", resource_type, params=params)
        entries = (body or {}).get("entry") or [] if status == 200 else []
        return [e["resource"] for e in entries if (e.get("search") or {}).get("mode", "match") == "match"]

    def transaction(self, bundle: dict) -> tuple[int, dict | None]:
        return self._send("POST", json=bundle)

    def update(self, resource: dict, if_match: str | None = None) -> tuple[int, dict | None]:
        headers = {"If-Match": f'W/"{if_match}"'} if if_match else {}
        return self._send(
            "PUT", f"{resource['resourceType']}/{resource['id']}", json=resource, headers=headers
        )

    def create(self, resource: dict) -> dict | None:
        return self._send("POST", resource["resourceType"], json=resource)[1]


@pytest.fixture(scope="module")
def store(stack) -> SignedStore:
    return SignedStore(stack.store_url, Redis.from_url(stack.redis_url))


@pytest.fixture(scope="module")
def pharmacies(stack) -> dict[str, requests.Session]:
    sessions = {
        ods: stack.session(client=stack.client(f"life-{ods.lower()}", "dispenser", ods))
        for ods in (NOMINATED, PATIENT_CHOICE, STRANGER)
    }
    yield sessions
    for s in sessions.values():
        s.close()


@pytest.fixture(scope="module")
def gp(stack) -> requests.Session:
    s = stack.session(client=stack.client("life-gp", "prescriber", PRESCRIBER))
    yield s
    s.close()


class Prescribed:
    def __init__(self, short_id: str, message_id: str, message: dict):
        self.short_id, self.message_id, self.message = short_id, message_id, message
        self.lines = [
            e["resource"]["identifier"][0]["value"]
            for e in message["entry"]
            if e["resource"]["resourceType"] == "MedicationRequest"
        ]


def prescribe(store: SignedStore, nominated: str | None = NOMINATED) -> Prescribed:
    """EPS's Send example with fresh ids, stored as the prescriber stores it."""
    message = example(SEND)
    short_id = new_short_form_id(PRESCRIBER)  # with its check character: $release verifies it
    message_id = str(uuid.uuid4())
    message["identifier"]["value"] = message_id
    for e in message["entry"]:
        r = e["resource"]
        if r["resourceType"] == "MedicationRequest":
            r["groupIdentifier"]["value"] = short_id
            r["identifier"][0]["value"] = str(uuid.uuid4())
            if nominated is None:
                r["dispenseRequest"].pop("performer", None)
            else:
                r["dispenseRequest"]["performer"]["identifier"]["value"] = nominated
    tx = prescription_transaction(
        message,
        short_id=short_id,
        message_key_value=message_key(PRESCRIBER, message_id),
        nhs_number=NHS_NUMBER,
        authored_on="2022-10-21T13:47:00+00:00",
        prescriber_ods=PRESCRIBER,
        nominated_ods=nominated,
    )
    status, body = store.as_caller("prescriber", PRESCRIBER).transaction(tx)
    assert status == 200, body
    return Prescribed(short_id, message_id, message)


def tracking_task(store: SignedStore, short_id: str) -> dict:
    (task,) = store.search("Task", [("identifier", f"{PRESCRIPTION_ID_SYSTEM}|{short_id}")])
    return task


def items(store: SignedStore, short_id: str) -> list[dict]:
    refs = [i["valueReference"]["reference"] for i in tracking_task(store, short_id)["input"]]
    return [store.read(*ref.split("/")) for ref in refs]


def release(store: SignedStore, short_id: str, ods: str) -> None:
    """As a release leaves a prescription: with ``ods``'s pharmacy, every part labelled for it."""
    task = tracking_task(store, short_id)
    assert store.update(with_status(task, BusinessStatus.WITH_DISPENSER, owner=ods))[0] == 200
    for item in items(store, short_id):
        codes = [s["code"] for s in item["meta"]["security"] if s["system"] == TENANT_SYSTEM]
        assert store.update(labelled(copy.deepcopy(item), tenant_labels(ods, *codes)))[0] == 200


def return_task(p: Prescribed) -> dict:
    task = example(RETURN)
    task["groupIdentifier"]["value"] = p.short_id
    task["focus"]["identifier"]["value"] = p.message_id
    task["for"]["identifier"]["value"] = NHS_NUMBER
    return task


def withdraw_task(p: Prescribed, notification_id: str) -> dict:
    task = example(WITHDRAW)
    task["groupIdentifier"]["value"] = p.short_id
    task["focus"]["identifier"]["value"] = notification_id
    task["for"]["identifier"]["value"] = NHS_NUMBER
    return task


def post_task(session: requests.Session, stack, task: dict) -> requests.Response:
    return session.post(f"{stack.fhir}/Task", json=task, headers=FHIR_JSON, timeout=30)


def audit_steps(store: SignedStore, task: dict) -> list[tuple[str, str]]:
    events = store.search("AuditEvent", [("entity", f"Task/{task['id']}"), ("_sort", "date")])
    return [(e["subtype"][0]["code"], e["agent"][0]["altId"]) for e in events]


def now() -> datetime:
    return datetime.now(UTC)


INFORMATIONAL = [{"severity": "information", "code": "informational"}]


# ---------------------------------------------------------------- return (POST /fhir/Task)


def test_a_returned_prescription_is_to_be_dispensed_again_by_its_nominated_pharmacy(stack, store, pharmacies):
    p = prescribe(store)
    release(store, p.short_id, PATIENT_CHOICE)
    r = post_task(pharmacies[PATIENT_CHOICE], stack, return_task(p))
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"] == INFORMATIONAL
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED and task["status"] == "requested"
    assert owner_ods(task) == NOMINATED  # releasable again, by the nominated pharmacy's queue
    assert audit_steps(store, task) == [("returned", "life-vne51")]
    # the returning pharmacy may still see what it held; the posted Task itself was not stored
    held = pharmacies[PATIENT_CHOICE].get(f"{stack.fhir}/Task/{task['id']}", timeout=30)
    assert held.status_code == 200
    assert not store.search(
        "Task",
        [("identifier", "https://tools.ietf.org/html/rfc4122|" + return_task(p)["identifier"][0]["value"])],
    )


def release_parameters(ods: str, short_id: str | None = None) -> dict:
    """Task/$release's Parameters: the pharmacy's queue, or one prescription by its short-form id."""
    agent = next(
        p["resource"]
        for p in example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json")["parameter"]
        if p["name"] == "agent"
    )
    parameters = [
        {
            "name": "owner",
            "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods},
        },
        {"name": "status", "valueCode": "accepted"},
        {"name": "agent", "resource": agent},
    ]
    if short_id is not None:
        parameters = [
            {
                "name": "group-identifier",
                "valueIdentifier": {"system": PRESCRIPTION_ID_SYSTEM, "value": short_id},
            },
            *parameters[1:],
        ]
    return {"resourceType": "Parameters", "parameter": parameters}


def released_short_ids(answer: dict) -> list[str]:
    """The short-form ids of the prescription-order messages a release answered with."""
    return [
        next(
            m["resource"]["groupIdentifier"]["value"]
            for m in e["resource"]["entry"]
            if m["resource"]["resourceType"] == "MedicationRequest"
        )
        for e in answer.get("entry") or []
    ]


def test_returned_after_a_patient_release_it_is_in_the_nominated_pharmacys_queue_again(
    stack, store, pharmacies
):
    """Through the real Task/$release: a patient takes the prescription to VNE51, which returns it;
    its nominated pharmacy's next queue release hands it out."""
    own = "FY" + uuid.uuid4().hex[:3].upper()  # a nominated pharmacy whose queue is this test's alone
    nominated_pharmacy = stack.session(client=stack.client(f"life-{own.lower()}", "dispenser", own))
    p = prescribe(store, nominated=own)
    r = pharmacies[PATIENT_CHOICE].post(
        f"{stack.fhir}/Task/$release",
        json=release_parameters(PATIENT_CHOICE, p.short_id),
        headers=FHIR_JSON,
        timeout=60,
    )
    assert r.status_code == 200 and released_short_ids(r.json()) == [p.short_id], r.text
    assert owner_ods(tracking_task(store, p.short_id)) == PATIENT_CHOICE

    assert post_task(pharmacies[PATIENT_CHOICE], stack, return_task(p)).status_code == 200
    task = tracking_task(store, p.short_id)
    assert (business_status(task), owner_ods(task)) == (BusinessStatus.TO_BE_DISPENSED, own)
    assert "contained" not in task  # nobody's release agent is left on it

    r = nominated_pharmacy.post(
        f"{stack.fhir}/Task/$release", json=release_parameters(own), headers=FHIR_JSON, timeout=60
    )
    assert r.status_code == 200 and released_short_ids(r.json()) == [p.short_id], r.text
    task = tracking_task(store, p.short_id)
    assert (business_status(task), owner_ods(task)) == (BusinessStatus.WITH_DISPENSER, own)
    nominated_pharmacy.close()


def test_a_returned_prescription_without_a_nomination_is_owned_by_nobody(stack, store, pharmacies):
    p = prescribe(store, nominated=None)
    release(store, p.short_id, PATIENT_CHOICE)
    assert post_task(pharmacies[PATIENT_CHOICE], stack, return_task(p)).status_code == 200
    task = tracking_task(store, p.short_id)
    assert "owner" not in task and business_status(task) is BusinessStatus.TO_BE_DISPENSED


def test_only_the_pharmacy_a_prescription_is_with_may_return_it(stack, store, pharmacies):
    p = prescribe(store)
    release(store, p.short_id, PATIENT_CHOICE)
    nominated = post_task(pharmacies[NOMINATED], stack, return_task(p))  # sees it, does not hold it
    assert nominated.status_code == 403
    assert (
        nominated.json()["issue"][0]["details"]["coding"][0]["code"] == "PRESCRIPTION_WITH_ANOTHER_DISPENSER"
    )
    stranger = post_task(pharmacies[STRANGER], stack, return_task(p))
    unknown = copy.deepcopy(return_task(p))
    unknown["groupIdentifier"]["value"] = "000000-A83008-00000X"
    missing = post_task(pharmacies[STRANGER], stack, unknown)
    assert stranger.status_code == missing.status_code == 404
    assert stranger.json()["issue"] == missing.json()["issue"]  # nothing told about others' prescriptions
    assert business_status(tracking_task(store, p.short_id)) is BusinessStatus.WITH_DISPENSER


def test_a_return_is_checked_with_epss_rules_and_words(stack, pharmacies):
    bad = {**example(RETURN), "status": "completed"}
    r = post_task(pharmacies[NOMINATED], stack, bad)
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"] == "Task.status must be one of: 'in-progress', 'rejected'."
    assert r.json()["issue"][0]["expression"] == ["Task.status"]
    withdraw = example(WITHDRAW)
    del withdraw["code"]
    r = post_task(pharmacies[NOMINATED], stack, withdraw)
    assert r.status_code == 400
    assert r.json()["issue"][0]["diagnostics"] == "Task.code is required when Task.status is 'in-progress'."


def test_a_pharmacy_cannot_slip_a_plain_task_in_through_a_transaction(stack, store, pharmacies):
    marker = str(uuid.uuid4())
    task = {**example(RETURN), "identifier": [{"system": "https://example.org/t", "value": marker}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{marker}", "resource": task, "request": {"method": "POST", "url": "Task"}}
        ],
    }
    r = pharmacies[NOMINATED].post(stack.fhir, json=bundle, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 403 and r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    assert not store.search("Task", [("identifier", f"https://example.org/t|{marker}")])


def test_a_prescriber_cannot_return_or_withdraw(stack, store, gp):
    p = prescribe(store)
    r = post_task(gp, stack, return_task(p))
    assert r.status_code == 403
    assert business_status(tracking_task(store, p.short_id)) is BusinessStatus.TO_BE_DISPENSED


# ---------------------------------------------------------------- dispense, withdraw, return


def test_dispensed_then_withdrawn_then_returned(stack, store, pharmacies):
    p = prescribe(store)
    release(store, p.short_id, NOMINATED)
    pharmacy = Sender("life-fa565", "dispenser", NOMINATED)
    sent = notification(p.short_id, p.message_id, dict.fromkeys(p.lines, "0001"))
    result = dispense.handle(sent, pharmacy, store, now())
    assert (result.code, result.status) == ("ok", 200), result.outcome
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.DISPENSED and task["status"] == "completed"
    assert all(r["status"] == "completed" and lc.item_status(r) == "0001" for r in items(store, p.short_id))
    dispenses = store.search(
        "MedicationDispense", [("identifier", f"{lc.NOTIFICATION_SYSTEM}|{sent['identifier']['value']}")]
    )
    assert len(dispenses) == len(p.lines)
    assert {d["authorizingPrescription"][0]["reference"] for d in dispenses} == {
        f"MedicationRequest/{r['id']}" for r in items(store, p.short_id)
    }
    # the pharmacy reads its dispenses through the proxy; another pharmacy does not see them
    mine = pharmacies[NOMINATED].get(f"{stack.fhir}/MedicationDispense/{dispenses[0]['id']}", timeout=30)
    theirs = pharmacies[STRANGER].get(f"{stack.fhir}/MedicationDispense/{dispenses[0]['id']}", timeout=30)
    assert (mine.status_code, theirs.status_code) == (200, 404)

    r = post_task(pharmacies[NOMINATED], stack, withdraw_task(p, sent["identifier"]["value"]))
    assert r.status_code == 200, r.text
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.WITH_DISPENSER and "output" not in task
    assert all(r["status"] == "active" and lc.item_status(r) == "0008" for r in items(store, p.short_id))
    withdrawn = store.search(
        "MedicationDispense", [("identifier", f"{lc.NOTIFICATION_SYSTEM}|{sent['identifier']['value']}")]
    )
    assert {d["status"] for d in withdrawn} == {"entered-in-error"}

    assert post_task(pharmacies[NOMINATED], stack, return_task(p)).status_code == 200
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED and owner_ods(task) == NOMINATED
    assert {lc.item_status(r) for r in items(store, p.short_id)} == {lc.TO_BE_DISPENSED_ITEM}
    assert [step for step, _ in audit_steps(store, task)] == ["dispensed", "withdrawn", "returned"]


def test_a_partial_dispense_leaves_it_active_and_another_pharmacy_cannot_dispense_it(store):
    p = prescribe(store)
    release(store, p.short_id, NOMINATED)
    partial = notification(p.short_id, p.message_id, {p.lines[0]: "0001", p.lines[1]: "0003"})
    other = dispense.handle(partial, Sender("life-vne51", "dispenser", PATIENT_CHOICE), store, now())
    assert (other.status, other.code) == (404, "fatal-error")  # VNE51 cannot see it at all
    assert dispense.handle(partial, Sender("life-fa565", "dispenser", NOMINATED), store, now()).code == "ok"
    assert business_status(tracking_task(store, p.short_id)) is BusinessStatus.WITH_DISPENSER_ACTIVE


def test_racing_dispense_notifications_each_land_whole_or_not_at_all(store):
    """Eight tills report on one prescription at once: every notification is either stored whole
    (its dispenses, its Task.output, its audit event) or refused as retryable with nothing stored."""
    p = prescribe(store)
    release(store, p.short_id, NOMINATED)
    pharmacy = Sender("life-fa565", "dispenser", NOMINATED)
    messages = [notification(p.short_id, p.message_id, {p.lines[n % len(p.lines)]: "0003"}) for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda m: dispense.handle(m, pharmacy, store, now()), messages))
    assert {r.code for r in results} <= {"ok", "transient-error"}
    landed = [m["identifier"]["value"] for m, r in zip(messages, results, strict=True) if r.code == "ok"]
    assert landed  # at least the first
    task = tracking_task(store, p.short_id)
    assert sorted(o["valueIdentifier"]["value"] for o in task["output"]) == sorted(landed)
    for m, r in zip(messages, results, strict=True):
        stored = store.search(
            "MedicationDispense", [("identifier", f"{lc.NOTIFICATION_SYSTEM}|{m['identifier']['value']}")]
        )
        assert len(stored) == (1 if r.code == "ok" else 0)
    assert [s for s, _ in audit_steps(store, task)] == ["dispensed"] * len(landed)


# ---------------------------------------------------------------- cancellation


def cancellation(p: Prescribed, line: str) -> dict:
    message = example(CANCEL)
    request = next(
        e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    request["groupIdentifier"]["value"] = p.short_id
    request["identifier"][0]["value"] = line
    return message


def test_cancelling_every_line_item_cancels_the_prescription(store):
    p = prescribe(store)
    gp = Sender("life-gp", "prescriber", PRESCRIBER)
    for line in p.lines:
        result = cancel.handle(cancellation(p, line), gp, store, now())
        assert result.code == "ok", result.outcome
        assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "R-0001"
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.CANCELLED and task["status"] == "cancelled"
    assert {r["status"] for r in items(store, p.short_id)} == {"cancelled"}
    assert [s for s, _ in audit_steps(store, task)] == ["cancelled"] * len(p.lines)


def test_a_prescription_with_a_dispenser_is_not_cancelled(store):
    p = prescribe(store)
    release(store, p.short_id, NOMINATED)
    result = cancel.handle(
        cancellation(p, p.lines[0]), Sender("life-gp", "prescriber", PRESCRIBER), store, now()
    )
    assert (result.status, result.code) == (422, "fatal-error")
    assert result.outcome["issue"][0]["details"]["coding"][0] == {
        "system": "https://fhir.nhs.uk/CodeSystem/medicationrequest-status-history",
        "code": "R-0002",
        "display": "Prescription/item was not cancelled. With dispenser.",
    }
    assert {r["status"] for r in items(store, p.short_id)} == {"active"}


def test_another_prescribers_cancellation_finds_nothing(store):
    p = prescribe(store)
    result = cancel.handle(
        cancellation(p, p.lines[0]), Sender("other-gp", "prescriber", "B81001"), store, now()
    )
    assert result.status == 404
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "R-0008"


# ---------------------------------------------------------------- the store's guard


def test_a_step_racing_another_change_is_refused_whole_by_the_store(store):
    p = prescribe(store)
    caller = store.as_caller("prescriber", PRESCRIBER)
    read = lc.find(caller, p.short_id)
    assert read is not None
    theirs = tracking_task(store, p.short_id)
    theirs["lastModified"] = lc.iso(now())  # someone else's change lands first
    assert store.update(theirs)[0] == 200
    cancelled = lc.with_item_status(read.items[0], lc.CANCELLED_ITEM)
    with pytest.raises(lc.Conflict):
        lc.commit(
            caller,
            p.short_id,
            [
                lc.update_entry(cancelled, lc.version_of(read.items[0])),
                lc.update_entry(read.task, lc.version_of(read.task)),
            ],
        )
    assert {r["status"] for r in items(store, p.short_id)} == {"active"}  # nothing half-written


# ---------------------------------------------------------------- through POST /fhir/$process-message


def process_message(session: requests.Session, stack, message: dict) -> tuple[int, dict, dict]:
    """(HTTP status, MessageHeader.response, the OperationOutcome) of a synchronous exchange."""
    r = session.post(f"{stack.fhir}/$process-message", json=message, headers=FHIR_JSON, timeout=60)
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "message", r.text
    header = body["entry"][0]["resource"]
    outcome = next(
        (e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "OperationOutcome"), {}
    )
    return r.status_code, header["response"], outcome


def fresh(message: dict) -> dict:
    """A message of its own: $process-message keeps exchanges by Bundle.id."""
    message = copy.deepcopy(message)
    message["id"] = str(uuid.uuid4())
    message["identifier"]["value"] = str(uuid.uuid4())
    return message


def test_the_cancellation_pair_through_process_message(stack, store, gp):
    p = prescribe(store)
    for line in p.lines:
        status, response, outcome = process_message(gp, stack, fresh(cancellation(p, line)))
        assert (status, response["code"]) == (200, "ok"), outcome
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "R-0001"
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.CANCELLED
    assert {r["status"] for r in items(store, p.short_id)} == {"cancelled"}
    assert [s for s, a in audit_steps(store, task)] == ["cancelled"] * len(p.lines)

    released_one = prescribe(store)
    release(store, released_one.short_id, NOMINATED)
    status, response, outcome = process_message(
        gp, stack, fresh(cancellation(released_one, released_one.lines[0]))
    )
    assert (status, response["code"]) == (422, "fatal-error")
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "R-0002"
    assert business_status(tracking_task(store, released_one.short_id)) is BusinessStatus.WITH_DISPENSER


def test_a_dispense_notification_through_process_message(stack, store, pharmacies, gp):
    p = prescribe(store)
    release(store, p.short_id, NOMINATED)
    message = fresh(notification(p.short_id, p.message_id, dict.fromkeys(p.lines, "0001")))
    status, response, _ = process_message(pharmacies[STRANGER], stack, message)
    assert (status, response["code"]) == (404, "fatal-error")  # it cannot see the prescription
    refused = gp.post(f"{stack.fhir}/$process-message", json=fresh(message), headers=FHIR_JSON, timeout=60)
    assert refused.status_code == 403  # a prescriber does not dispense
    status, response, outcome = process_message(pharmacies[NOMINATED], stack, message)
    assert (status, response["code"]) == (200, "ok"), outcome
    task = tracking_task(store, p.short_id)
    assert business_status(task) is BusinessStatus.DISPENSED
    assert {r["status"] for r in items(store, p.short_id)} == {"completed"}
    # the same message again: the first answer, nothing stored twice
    again = process_message(pharmacies[NOMINATED], stack, message)
    assert again[:2] == (status, response)
    assert len(
        store.search(
            "MedicationDispense",
            [("identifier", f"{lc.NOTIFICATION_SYSTEM}|{message['identifier']['value']}")],
        )
    ) == len(p.lines)
