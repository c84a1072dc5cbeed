"""EPS Task/$release and the prescription tracker through the real proxy and store: nominated and
patient release, EPS's errors, who may release and see what, and ten tills racing on one queue.

Prescriptions are stored as $process-message will store them (eps.records' transaction, sent to
the store as the prescriber; tests/support/eps.py). Each test uses pharmacies of its own, so the
queues of one test are not touched by another."""

from __future__ import annotations

import secrets
import threading
from collections import Counter

import pytest
import requests

from eps.records import BusinessStatus
from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM
from tests.support.eps import PRESCRIBER_ODS, Seeder, authored, example, new_short_form_id

pytestmark = pytest.mark.integration
FHIR_JSON = {"Content-Type": "application/fhir+json"}
STATUS = "https://fhir.nhs.uk/CodeSystem/EPS-task-business-status"
AGENT = next(
    p["resource"]
    for p in example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json")["parameter"]
    if p["name"] == "agent"
)


def pharmacy() -> str:
    """An ODS code no other test uses: its queue is this test's alone."""
    return "FX" + secrets.token_hex(2).upper()


@pytest.fixture(scope="module")
def seeder(stack):
    s = Seeder(stack.store_url, stack.redis_url)
    yield s
    s.close()


def dispenser(stack, ods: str, till: str = "1") -> requests.Session:
    return stack.session(client=stack.client(f"till-{ods}-{till}", "dispenser", ods))


def nominated(ods: str) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "owner", "valueIdentifier": {"system": ODS_SYSTEM, "value": ods}},
            {"name": "status", "valueCode": "accepted"},
            {"name": "agent", "resource": AGENT},
        ],
    }


def by_patient(short_id: str, ods: str) -> dict:
    """EPS's own patient release example, for this prescription and pharmacy."""
    body = example("spec__dispense__Patient-Request-Release-200_OK.json")
    for p in body["parameter"]:
        if p["name"] == "group-identifier":
            p["valueIdentifier"]["value"] = short_id
        if p["name"] == "owner":
            p["resource"]["identifier"][0]["value"] = ods
    return body


def release(stack, session: requests.Session, body: dict, query: str = "") -> requests.Response:
    return session.post(f"{stack.fhir}/Task/$release{query}", json=body, headers=FHIR_JSON, timeout=60)


def short_ids(bundle: dict) -> list[str]:
    """The prescriptions of a release answer, by short-form id, in answer order."""
    out = []
    for entry in bundle.get("entry") or []:
        message = entry["resource"]
        assert message["resourceType"] == "Bundle" and message["type"] == "message"
        request = next(
            e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
        )
        out.append(request["groupIdentifier"]["value"])
    return out


def tracking_task(stack, short_id: str) -> dict:
    r = stack.session().get(f"{stack.fhir}/Task", params={"group-identifier": short_id}, timeout=30)
    (entry,) = r.json()["entry"]
    return entry["resource"]


def status_of(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


def code_of(outcome: dict) -> str:
    return outcome["issue"][0]["details"]["coding"][0]["code"]


# ---------------------------------------------------------------- nominated release


def test_a_nominated_release_hands_out_25_oldest_first_then_the_rest_then_none(stack, seeder):
    ods = pharmacy()
    seeded = seeder.seed_many(ods, 27)  # oldest first
    till = dispenser(stack, ods)

    first = release(stack, till, nominated(ods))
    assert first.status_code == 200, first.text
    assert first.json()["type"] == "searchset" and first.json()["total"] == 25
    assert short_ids(first.json()) == seeded[:25]
    task = tracking_task(stack, seeded[0])
    assert status_of(task) == BusinessStatus.WITH_DISPENSER.value and task["status"] == "accepted"
    assert task["owner"]["identifier"]["value"] == ods
    assert task["contained"][0]["practitioner"]["display"] == "Jackie Clark"

    second = release(stack, till, nominated(ods))
    assert short_ids(second.json()) == seeded[25:]

    third = release(stack, till, nominated(ods))
    assert third.status_code == 200 and third.json()["total"] == 0 and "entry" not in third.json()
    eps_shape = release(stack, till, nominated(ods), "?response-shape=eps-parameters")
    assert eps_shape.status_code == 200 and code_of(eps_shape.json()) == "NO_MORE_PRESCRIPTIONS"


def test_epss_own_nominated_request_and_answer_shape(stack, seeder):
    ods = pharmacy()
    (short_id,) = seeder.seed_many(ods, 1)
    body = example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json")
    body["parameter"][0]["resource"]["identifier"][0]["value"] = ods
    r = release(stack, dispenser(stack, ods), body, "?response-shape=eps-parameters")
    assert r.status_code == 200, r.text
    passed, failed = r.json()["parameter"]
    assert (passed["name"], failed["name"]) == ("passedPrescriptions", "failedPrescriptions")
    assert short_ids(passed["resource"]) == [short_id] and failed["resource"]["total"] == 0


def test_each_release_leaves_an_audit_event_naming_the_client(stack, seeder):
    ods = pharmacy()
    (short_id,) = seeder.seed_many(ods, 1)
    assert release(stack, dispenser(stack, ods), nominated(ods)).status_code == 200
    task = tracking_task(stack, short_id)
    events = (
        stack.session()
        .get(
            f"{stack.fhir}/AuditEvent",
            params={"entity": f"Task/{task['id']}/_history/{task['meta']['versionId']}"},
        )
        .json()
    )
    (event,) = [e["resource"] for e in events.get("entry") or []]
    assert event["agent"][0]["altId"] == f"till-{ods}-1"
    assert event["subtype"][0]["code"] == "released"


# ---------------------------------------------------------------- patient release and errors


def test_a_patient_release_by_short_form_id_from_any_pharmacy(stack, seeder):
    nominated_to, walk_in = pharmacy(), pharmacy()
    short_id = seeder.seed(nominated_to, authored(30))
    till = dispenser(stack, walk_in)
    r = release(stack, till, by_patient(short_id, walk_in))
    assert r.status_code == 200, r.text
    assert short_ids(r.json()) == [short_id]
    task = tracking_task(stack, short_id)
    assert status_of(task) == "0002" and task["owner"]["identifier"]["value"] == walk_in
    # the pharmacy now sees what it holds: the Task, the message and its MedicationRequests
    mine = till.get(f"{stack.fhir}/Task", params={"group-identifier": short_id}).json()
    assert mine["total"] == 1
    message_id = task["focus"]["reference"].split("/")[1]
    assert till.get(f"{stack.fhir}/Bundle/{message_id}").status_code == 200
    mr = task["input"][0]["valueReference"]["reference"]
    assert till.get(f"{stack.fhir}/{mr}").status_code == 200
    # and the nominated pharmacy's queue no longer has it
    assert release(stack, dispenser(stack, nominated_to), nominated(nominated_to)).json()["total"] == 0


def test_a_prescription_with_another_dispenser_names_that_dispenser(stack, seeder):
    first, second = pharmacy(), pharmacy()
    short_id = seeder.seed(None, authored(20))
    assert release(stack, dispenser(stack, first), by_patient(short_id, first)).status_code == 200
    r = release(stack, dispenser(stack, second), by_patient(short_id, second))
    assert r.status_code == 400
    outcome = r.json()
    assert code_of(outcome) == "PRESCRIPTION_WITH_ANOTHER_DISPENSER"
    assert outcome["issue"] == example("spec__errors__release__with-another-dispenser-error.json")["issue"]
    (org,) = outcome["contained"]
    assert org["resourceType"] == "Organization" and org["identifier"][0]["value"] == first
    assert outcome["extension"][0]["valueReference"]["reference"] == f"#{org['id']}"


def test_an_unknown_prescription_is_epss_not_found(stack):
    ods = pharmacy()
    r = release(stack, dispenser(stack, ods), by_patient(new_short_form_id(), ods))
    assert r.status_code == 400
    want = example("spec__errors__release__not-found-error.json")
    assert r.json()["issue"] == want["issue"]


@pytest.mark.parametrize(
    "change, where",
    [
        (
            lambda b: b["parameter"].append({"name": "group-identifier", "valueIdentifier": {"value": "X"}}),
            None,
        ),
        (lambda b: b["parameter"].pop(0), "Parameters.parameter"),
        (lambda b: b["parameter"][1].update(valueCode="completed"), "Parameters.parameter[1].valueCode"),
        (lambda b: b.update(resourceType="Basic"), "Parameters"),
    ],
    ids=["both", "neither", "wrong status", "not Parameters"],
)
def test_bad_parameters_are_400_with_expression(stack, change, where):
    ods = pharmacy()
    body = nominated(ods)
    change(body)
    r = release(stack, dispenser(stack, ods), body)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["expression"]
    if where:
        assert r.json()["issue"][0]["expression"] == [where]


# ---------------------------------------------------------------- who may release and see what


def test_a_pharmacy_cannot_release_another_pharmacys_queue(stack, seeder):
    mine, theirs = pharmacy(), pharmacy()
    seeder.seed_many(theirs, 2)
    r = release(stack, dispenser(stack, mine), nominated(theirs))
    assert r.status_code == 403
    assert release(stack, dispenser(stack, theirs), nominated(theirs)).json()["total"] == 2


def test_a_prescriber_cannot_release(stack, seeder):
    ods = pharmacy()
    seeder.seed_many(ods, 1)
    prescriber = stack.session(client=stack.client("gp-release", "prescriber", PRESCRIBER_ODS))
    assert release(stack, prescriber, nominated(ods)).status_code == 403
    assert release(stack, prescriber, by_patient(new_short_form_id(), ods)).status_code == 403


def test_a_pharmacy_cannot_read_or_search_another_pharmacys_prescriptions(stack, seeder):
    mine, theirs = pharmacy(), pharmacy()
    (short_id,) = seeder.seed_many(theirs, 1)
    released = release(stack, dispenser(stack, theirs), nominated(theirs)).json()
    message_id = released["entry"][0]["resource"]["id"]
    task = tracking_task(stack, short_id)
    me = dispenser(stack, mine)
    assert me.get(f"{stack.fhir}/Task/{task['id']}").status_code == 404
    assert me.get(f"{stack.fhir}/Bundle/{message_id}").status_code == 404
    for params in (
        {"group-identifier": short_id},
        {"owner-identifier": f"{ODS_SYSTEM}|{theirs}"},
        # the forms integrators write, rewritten to owner-identifier (plugins/search_aliases.py)
        {"owner:identifier": f"{ODS_SYSTEM}|{theirs}"},
        {"owner.identifier": theirs},
        {"identifier": f"https://fhir.nhs.uk/Id/prescription-order-number|{short_id}"},
    ):
        r = me.get(f"{stack.fhir}/Task", params=params)
        assert r.status_code == 200 and r.json()["total"] == 0, params
    assert me.get(f"{stack.fhir}/Task", params={"owner.name": theirs}).status_code == 400  # a chain


def test_the_tracker_answers_where_a_prescription_is(stack, seeder):
    ods = pharmacy()
    nhs_number = "9000000009"
    short_id = seeder.seed(ods, authored(10), nhs_number=nhs_number)
    till = dispenser(stack, ods)
    assert release(stack, till, nominated(ods)).json()["total"] == 1
    prescriber = stack.session(client=stack.client("gp-tracker", "prescriber", PRESCRIBER_ODS))
    other_gp = stack.session(client=stack.client("gp-elsewhere", "prescriber", "B81001"))
    queries = {
        "short-form id": {"group-identifier": short_id},
        "NHS Number": {"patient-identifier": f"{NHS_NUMBER_SYSTEM}|{nhs_number}"},
        "prescriber": {
            "requester-identifier": f"{ODS_SYSTEM}|{PRESCRIBER_ODS}",
            "group-identifier": short_id,
        },
        "pharmacy": {"owner-identifier": f"{ODS_SYSTEM}|{ods}"},
        "status": {"business-status": f"{STATUS}|0002", "owner-identifier": f"{ODS_SYSTEM}|{ods}"},
    }
    for what, params in queries.items():
        for session, sees in ((prescriber, True), (till, True), (other_gp, False)):
            r = session.get(f"{stack.fhir}/Task", params=params)
            assert r.status_code == 200, (what, r.text)
            found = [e["resource"]["groupIdentifier"]["value"] for e in r.json().get("entry") or []]
            assert (found == [short_id]) is sees, (what, found)


# ---------------------------------------------------------------- concurrency


def test_ten_racing_releases_hand_out_each_of_30_prescriptions_exactly_once(stack, seeder):
    ods = pharmacy()
    seeded = seeder.seed_many(ods, 30)
    tills = [dispenser(stack, ods, str(n)) for n in range(10)]
    for till in tills:  # tokens first, so the releases start together
        assert till.get(f"{stack.fhir}/Task", params={"_count": "0"}).status_code == 200
    start = threading.Barrier(len(tills))
    answers: list[list[str]] = [[] for _ in tills]
    failures: list[str] = []

    def run(n: int) -> None:
        start.wait()
        r = release(stack, tills[n], nominated(ods))
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text[:300]}")
            return
        answers[n] = short_ids(r.json())

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(tills))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    handed_out = Counter(s for answer in answers for s in answer)
    assert [s for s, n in handed_out.items() if n > 1] == []  # none twice
    assert set(handed_out) == set(seeded)  # every one
    assert all(len(answer) <= 25 for answer in answers)
    statuses = (
        stack.session()
        .get(f"{stack.fhir}/Task", params={"owner-identifier": f"{ODS_SYSTEM}|{ods}", "_count": "50"})
        .json()
    )
    assert Counter(status_of(e["resource"]) for e in statuses["entry"]) == {"0002": 30}


def test_the_capability_statement_lists_release_on_task(stack, anon):
    cs = anon.get(f"{stack.fhir}/metadata").json()
    task = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Task")
    assert {
        "name": "release",
        "definition": "https://fhir.nhs.uk/OperationDefinition/Task-release-message",
    } in task["operation"]
