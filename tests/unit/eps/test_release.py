"""Task/$release rules on an in-memory store that checks versions as HAPI does: what a request
means, who gets which prescription, how a release that loses a race behaves, and EPS's answers."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl

import pytest

from eps import release as rules
from eps.records import (
    BusinessStatus,
    business_status,
    owner_ods,
    tenant_labels,
    tracking_task,
    with_queue_mark,
)
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from proxy.errors import FhirError
from tests.support.eps import example, new_short_form_id

PHARMACY, OTHER, PRESCRIBER = "VNE51", "FCG71", "A83008"
NOW = "2026-01-01T10:00:00.000Z"
AGENT = {
    "resourceType": "PractitionerRole",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "555086415105"}],
    "practitioner": {
        "identifier": {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "3415870201"},
        "display": "Jackie Clark",
    },
    "telecom": [{"system": "phone", "value": "02380798431", "use": "work"}],
}


def params(*parameters: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


STATUS = {"name": "status", "valueCode": "accepted"}
AGENT_PARAM = {"name": "agent", "resource": AGENT}


def owner(ods: str = PHARMACY) -> dict:
    return {"name": "owner", "valueIdentifier": {"system": ODS_SYSTEM, "value": ods}}


def group(short_id: str) -> dict:
    return {
        "name": "group-identifier",
        "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/prescription-order-number", "value": short_id},
    }


def tenants(resource: dict) -> set[str]:
    return {s["code"] for s in resource["meta"]["security"] if s["system"] == TENANT_SYSTEM}


class MemoryStore:
    """Tasks, message Bundles, MedicationRequests and Organizations with HAPI's version check
    (a PUT naming a stale version fails 409: alone in a batch, the whole of a transaction)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.next_id = 100
        self.before_write: list = []  # callables run before a batch or transaction: a racing release
        self.bundles_sent: list[dict] = []
        self.between_index_and_load: list = []  # callables run after a search matched, before it loads

    def add(self, resource: dict) -> dict:
        resource = copy.deepcopy(resource)
        self.next_id += 1
        resource["id"] = str(self.next_id)
        resource.setdefault("meta", {})["versionId"] = "1"
        self.data[f"{resource['resourceType']}/{resource['id']}"] = resource
        return resource

    def prescription(self, authored_on: str, nominated: str | None = PHARMACY) -> dict:
        labels = tenant_labels(PRESCRIBER, nominated)
        short_id = new_short_form_id()
        message = self.add(
            {
                "resourceType": "Bundle",
                "type": "message",
                "identifier": {"value": f"m-{authored_on}"},
                "meta": {"security": labels},
            }
        )
        mr = self.add({"resourceType": "MedicationRequest", "meta": {"security": labels}})
        task = tracking_task(
            short_id=short_id,
            message_key_value=f"{PRESCRIBER}/m",
            message_ref=f"Bundle/{message['id']}",
            nhs_number="9449304130",
            authored_on=authored_on,
            prescriber_ods=PRESCRIBER,
            nominated_ods=nominated,
            medication_request_refs=[f"MedicationRequest/{mr['id']}"],
            labels=labels,
        )
        return self.add(task)

    def tasks(self) -> list[dict]:
        return [r for r in self.data.values() if r["resourceType"] == "Task"]

    def search(self, resource_type: str, query, count: int = 200) -> list[dict]:
        q = dict(query)
        found = [r for r in self.data.values() if r["resourceType"] == resource_type]
        if "_id" in q:
            found = [r for r in found if r["id"] in q["_id"].split(",")]
        if "group-identifier" in q:
            found = [
                r
                for r in found
                if r.get("groupIdentifier", {}).get("value") == q["group-identifier"].split("|")[-1]
            ]
        if rules.OWNER_PARAM in q:
            found = [r for r in found if owner_ods(r) == q[rules.OWNER_PARAM].split("|")[-1]]
        if "business-status" in q:
            found = [
                r for r in found if business_status(r) is BusinessStatus(q["business-status"].split("|")[-1])
            ]
        if "_tag" in q:
            system, _, code = q["_tag"].partition("|")
            found = [
                r
                for r in found
                if {"system": system, "code": code} in ((r.get("meta") or {}).get("tag") or [])
            ]
        if "identifier" in q:
            value = q["identifier"].split("|")[-1]
            found = [r for r in found if any(i.get("value") == value for i in r.get("identifier") or [])]
        if "_sort" in q:
            found.sort(key=lambda r: r["authoredOn"])
        ids = [f"{r['resourceType']}/{r['id']}" for r in found[:count]]
        for racer in self.between_index_and_load:
            racer()
        self.between_index_and_load = []
        return [copy.deepcopy(self.data[i]) for i in ids]  # the bodies as they are now, as HAPI loads them

    def transaction(self, bundle: dict) -> tuple[int, dict | None]:
        self.bundles_sent.append(bundle)
        for racer in self.before_write:
            racer()
        self.before_write = []
        atomic = bundle["type"] == "transaction"
        if atomic and any(self._stale(e) for e in bundle["entry"]):
            return 409, {
                "resourceType": "OperationOutcome",
                "issue": [{"diagnostics": "not the current version"}],
            }
        out: list[dict | None] = [None] * len(bundle["entry"])
        reads = [i for i, e in enumerate(bundle["entry"]) if e["request"]["method"] == "GET"]
        for i, entry in enumerate(bundle["entry"]):
            if i in reads:
                continue
            if self._stale(entry):
                out[i] = {"response": {"status": "409 Conflict"}}
                continue
            out[i] = {"response": self._write(entry)}
        for i in reads:  # as HAPI does: a bundle's reads after its writes
            url = bundle["entry"][i]["request"]["url"]
            if "?" not in url:
                known = url in self.data
                out[i] = {
                    "resource": copy.deepcopy(self.data[url]) if known else None,
                    "response": {"status": "200 OK" if known else "404 Not Found"},
                }
                continue
            resource_type, _, query = url.partition("?")
            found = self.search(resource_type, parse_qsl(query))
            out[i] = {
                "resource": {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [{"resource": r, "search": {"mode": "match"}} for r in found],
                },
                "response": {"status": "200 OK"},
            }
        return 200, {"resourceType": "Bundle", "type": f"{bundle['type']}-response", "entry": out}

    def _stale(self, entry: dict) -> bool:
        request = entry["request"]
        if request["method"] != "PUT" or "ifMatch" not in request:
            return False
        return request["ifMatch"] != f'W/"{self.data[request["url"]]["meta"]["versionId"]}"'

    def _write(self, entry: dict) -> dict:
        request, resource = entry["request"], copy.deepcopy(entry["resource"])
        if request["method"] == "POST":
            stored = self.add(resource)
            return {"status": "201 Created", "location": f"{request['url']}/{stored['id']}/_history/1"}
        version = str(int(self.data[request["url"]]["meta"]["versionId"]) + 1)
        resource["meta"] = {**resource.get("meta", {}), "versionId": version}
        self.data[request["url"]] = resource
        return {"status": "200 OK", "etag": f'W/"{version}"'}


def nominated(pharmacy: str = PHARMACY) -> rules.ReleaseRequest:
    return rules.ReleaseRequest(rules.Kind.NOMINATED, pharmacy, AGENT)


def patient(short_id: str, pharmacy: str = PHARMACY) -> rules.ReleaseRequest:
    return rules.ReleaseRequest(rules.Kind.PATIENT, pharmacy, AGENT, short_id)


def refusal(body: object, caller: str = PHARMACY) -> FhirError:
    with pytest.raises(FhirError) as raised:
        rules.parse(body, caller)
    return raised.value


# ---------------------------------------------------------------- the request


def test_the_seeds_owner_asks_for_a_nominated_release():
    asked = rules.parse(params(owner(), STATUS, AGENT_PARAM), PHARMACY)
    assert (asked.kind, asked.pharmacy, asked.short_id) == (rules.Kind.NOMINATED, PHARMACY, None)
    assert asked.agent == AGENT and asked.shape is rules.Shape.SEARCHSET


def test_epss_nominated_example_is_a_nominated_release():
    asked = rules.parse(example("spec__dispense__Nominated-Pharmacy-Request-Release-200_OK.json"), "VNE51")
    assert asked.kind is rules.Kind.NOMINATED and asked.pharmacy == "VNE51"


@pytest.mark.parametrize(
    "name",
    [
        "spec__dispense__Patient-Request-Release-200_OK.json",
        "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Task-Request-Release-200_OK.json",
    ],
)
def test_epss_examples_with_a_group_identifier_are_patient_releases_by_the_owner(name):
    body = example(name)
    asked = rules.parse(body, "VNE51")
    short_id = next(p for p in body["parameter"] if p["name"] == "group-identifier")["valueIdentifier"][
        "value"
    ]
    assert (asked.kind, asked.pharmacy, asked.short_id) == (rules.Kind.PATIENT, "VNE51", short_id)


def test_a_group_identifier_alone_is_a_patient_release_by_the_caller():
    short_id = new_short_form_id()
    asked = rules.parse(params(group(short_id), STATUS, AGENT_PARAM), PHARMACY)
    assert (asked.kind, asked.short_id) == (rules.Kind.PATIENT, short_id)


def test_both_the_seeds_owner_and_a_group_identifier_are_refused():
    error = refusal(params(owner(), group(new_short_form_id()), STATUS, AGENT_PARAM))
    assert error.status == 400 and error.expression == ["Parameters.parameter[0]"]


def test_neither_owner_nor_group_identifier_is_refused():
    error = refusal(params(STATUS, AGENT_PARAM))
    assert error.status == 400 and "owner" in error.diagnostics


def test_another_pharmacys_queue_is_forbidden():
    error = refusal(params(owner(OTHER), STATUS, AGENT_PARAM))
    assert error.status == 403 and error.expression == ["Parameters.parameter[0]"]


def test_releasing_as_another_pharmacy_in_epss_form_is_forbidden():
    body = example("spec__dispense__Patient-Request-Release-200_OK.json")
    assert refusal(body, caller=OTHER).status == 403


@pytest.mark.parametrize("status", ["requested", "completed", None])
def test_status_other_than_accepted_is_refused_at_the_value(status):
    error = refusal(params(owner(), {"name": "status", "valueCode": status}, AGENT_PARAM))
    assert error.status == 400 and error.expression == ["Parameters.parameter[1].valueCode"]


def test_a_missing_status_is_refused():
    assert refusal(params(owner(), AGENT_PARAM)).status == 400


def test_a_short_form_id_with_a_wrong_check_character_is_refused_at_the_value():
    good = new_short_form_id()
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    error = refusal(params(group(bad), STATUS, AGENT_PARAM))
    assert error.status == 400 and error.expression == ["Parameters.parameter[0].valueIdentifier.value"]


@pytest.mark.parametrize(
    "body, where",
    [
        ({"resourceType": "Bundle"}, "Parameters"),
        (params(), "Parameters.parameter"),
        (params(owner(), STATUS), "Parameters.parameter"),  # no agent
        (
            params(owner(), STATUS, {"name": "agent", "resource": {"resourceType": "Practitioner"}}),
            "Parameters.parameter[2].resource",
        ),
        (params(owner(), STATUS, AGENT_PARAM, {"name": "when"}), "Parameters.parameter[3].name"),
        (params(owner(), STATUS, AGENT_PARAM, STATUS), "Parameters.parameter[3].name"),
        (params({"name": "owner", "valueString": PHARMACY}, STATUS, AGENT_PARAM), "Parameters.parameter[0]"),
        (
            params(
                {"name": "owner", "valueIdentifier": {"system": ODS_SYSTEM, "value": "v ne"}},
                STATUS,
                AGENT_PARAM,
            ),
            "Parameters.parameter[0].valueIdentifier.value",
        ),
    ],
)
def test_malformed_parameters_are_400_at_the_element(body, where):
    error = refusal(body)
    assert error.status == 400 and error.expression == [where]


def test_an_agent_pointing_at_its_practitioner_is_refused_as_eps_does():
    agent = {**AGENT, "practitioner": {"reference": "Practitioner/1"}}
    error = refusal(params(owner(), STATUS, {"name": "agent", "resource": agent}))
    assert error.expression == ["Parameters.parameter[2].resource.practitioner"]


def test_the_answers_shape_comes_from_the_url_or_a_parameter():
    assert (
        rules.parse(params(owner(), STATUS, AGENT_PARAM), PHARMACY, "eps-parameters").shape
        is rules.Shape.EPS_PARAMETERS
    )
    shaped = params(owner(), STATUS, AGENT_PARAM, {"name": "response-shape", "valueCode": "eps-parameters"})
    assert rules.parse(shaped, PHARMACY).shape is rules.Shape.EPS_PARAMETERS
    assert (
        refusal(params(owner(), STATUS, AGENT_PARAM, {"name": "response-shape", "valueCode": "xml"})).status
        == 400
    )


# ---------------------------------------------------------------- nominated release


def test_a_nominated_release_hands_out_25_oldest_first_and_marks_them_with_the_dispenser():
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:{m:02d}:00Z") for m in reversed(range(30))]
    released = rules.release_nominated(store, nominated(), now=NOW)
    oldest = sorted(tasks, key=lambda t: t["authoredOn"])[:25]
    assert [t["id"] for t in released.tasks] == [t["id"] for t in oldest]
    assert [m["id"] for m in released.messages] == [t["focus"]["reference"].split("/")[1] for t in oldest]
    for task in released.tasks:
        stored = store.data[f"Task/{task['id']}"]
        assert business_status(stored) is BusinessStatus.WITH_DISPENSER and stored["status"] == "accepted"
        assert owner_ods(stored) == PHARMACY and stored["lastModified"] == NOW
        assert stored["contained"][0]["practitioner"]["display"] == "Jackie Clark"
        assert stored["extension"][0] == {
            "url": rules.AGENT_EXTENSION,
            "valueReference": {"reference": "#release-agent"},
        }
        assert stored["extension"][1]["url"] == rules.RELEASE_ID_EXTENSION
    assert sum(business_status(t) is BusinessStatus.TO_BE_DISPENSED for t in store.tasks()) == 5


def test_every_compare_and_set_names_the_version_it_read():
    store = MemoryStore()
    store.prescription("2025-01-01T10:00:00Z")
    rules.release_nominated(store, nominated(), now=NOW)
    (sent,) = store.bundles_sent
    puts = [e for e in sent["entry"] if e["request"]["method"] == "PUT"]
    assert [e["request"]["ifMatch"] for e in puts] == ['W/"1"']


def test_an_uncontested_release_is_one_transaction_of_the_moves_the_audit_event_and_the_read():
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:0{m}:00Z") for m in range(3)]
    released = rules.release_nominated(store, nominated(), now=NOW, client_id="till-1")
    (sent,) = store.bundles_sent
    assert sent["type"] == "transaction"
    assert [e["request"]["method"] for e in sent["entry"]] == ["PUT"] * 3 + ["POST", "GET"]
    assert released.audited and [t["meta"]["versionId"] for t in released.tasks] == ["2"] * 3
    assert [m["id"] for m in released.messages] == [t["focus"]["reference"].split("/")[1] for t in tasks]


def test_a_contested_first_round_changes_nothing_and_goes_on_entry_by_entry():
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:0{m}:00Z") for m in range(3)]

    def racer():  # another till takes the oldest between our search and our transaction
        current = store.data[f"Task/{tasks[0]['id']}"]
        store.data[f"Task/{tasks[0]['id']}"] = with_queue_mark(
            {
                **current,
                "businessStatus": {"coding": [BusinessStatus.WITH_DISPENSER.coding()]},
                "meta": {**current["meta"], "versionId": "2"},
            }
        )

    store.before_write.append(racer)
    released = rules.release_nominated(store, nominated(), now=NOW)
    assert [b["type"] for b in store.bundles_sent] == ["transaction", "batch"]
    assert not [r for r in store.data.values() if r["resourceType"] == "AuditEvent"]  # all or nothing
    assert [t["id"] for t in released.tasks] == [t["id"] for t in tasks[1:]] and not released.audited


def test_a_second_nominated_release_finds_no_more_prescriptions():
    store = MemoryStore()
    store.prescription("2025-01-01T10:00:00Z")
    rules.release_nominated(store, nominated(), now=NOW)
    again = rules.release_nominated(store, nominated(), now=NOW)
    assert again.tasks == [] and again.messages == []
    assert again.informational["issue"][0]["details"]["coding"][0]["code"] == "NO_MORE_PRESCRIPTIONS"
    assert again.informational["issue"][0]["severity"] == "information"


def test_another_pharmacys_nominations_are_not_in_the_queue():
    store = MemoryStore()
    store.prescription("2025-01-01T10:00:00Z", nominated=OTHER)
    assert rules.release_nominated(store, nominated(), now=NOW).tasks == []


def test_prescriptions_a_racing_release_took_are_skipped_and_the_queue_looked_at_again():
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:{m:02d}:00Z") for m in range(27)]
    taken = tasks[:3]

    def racer():  # another till takes the three oldest between our search and our update
        for t in taken:
            current = store.data[f"Task/{t['id']}"]
            store.data[f"Task/{t['id']}"] = with_queue_mark(
                {
                    **current,
                    "businessStatus": {"coding": [BusinessStatus.WITH_DISPENSER.coding()]},
                    "meta": {**current["meta"], "versionId": "2"},
                }
            )

    store.before_write.append(racer)
    released = rules.release_nominated(store, nominated(), now=NOW)
    ids = [t["id"] for t in released.tasks]
    assert not {t["id"] for t in taken} & set(ids)
    assert ids == [t["id"] for t in tasks[3:]]  # 22 in the first round, the last 2 in the second
    # the refused transaction, then a batch per round
    assert [b["type"] for b in store.bundles_sent] == ["transaction", "batch", "batch"]


def test_a_task_moved_between_the_searchs_index_and_its_load_is_not_released_again():
    """HAPI matches a search on its index, then loads the bodies: a Task another release moved in
    between comes back moved, with its new version, and a compare-and-set on it would succeed."""
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:{m:02d}:00Z") for m in range(3)]
    first = tasks[0]

    def racer():
        current = store.data[f"Task/{first['id']}"]
        store.data[f"Task/{first['id']}"] = with_queue_mark(
            {
                **current,
                "businessStatus": {"coding": [BusinessStatus.WITH_DISPENSER.coding()]},
                "owner": {"identifier": {"system": ODS_SYSTEM, "value": PHARMACY}},
                "meta": {**current["meta"], "versionId": "2"},
            }
        )

    store.between_index_and_load.append(racer)
    released = rules.release_nominated(store, nominated(), now=NOW)
    assert [t["id"] for t in released.tasks] == [t["id"] for t in tasks[1:]]


def test_an_entry_the_store_reports_failed_but_applied_is_still_handed_out():
    """Seen on HAPI with H2 under load: the write stands, the batch answer says it failed."""
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:0{m}:00Z") for m in range(3)]
    real = store._write

    def applied_but_reported_failed(entry):
        answer = real(entry)
        if entry["request"]["url"] == f"Task/{tasks[1]['id']}":
            return {"status": "500 Internal Server Error"}
        return answer

    store._write = applied_but_reported_failed
    released = rules.release_nominated(store, nominated(), now=NOW)
    assert sorted(t["id"] for t in released.tasks) == sorted(t["id"] for t in tasks)
    assert len(released.messages) == 3


def test_a_task_another_release_of_the_same_pharmacy_took_is_not_claimed():
    store = MemoryStore()
    task = store.prescription("2025-01-01T10:00:00Z")

    def other_till():  # same pharmacy, another release: its mark, not ours
        moved = rules.released_task(store.data[f"Task/{task['id']}"], nominated(), NOW)
        moved["meta"]["versionId"] = "2"
        store.data[f"Task/{task['id']}"] = moved

    store.before_write.append(other_till)
    assert rules.release_nominated(store, nominated(), now=NOW).tasks == []


# ---------------------------------------------------------------- patient release


def test_a_patient_release_hands_out_the_prescription_and_labels_it_for_the_pharmacy():
    store = MemoryStore()
    task = store.prescription("2025-01-01T10:00:00Z", nominated=OTHER)
    released = rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW)
    stored = store.data[f"Task/{task['id']}"]
    assert business_status(stored) is BusinessStatus.WITH_DISPENSER and owner_ods(stored) == PHARMACY
    assert tenants(stored) == {PRESCRIBER, OTHER, PHARMACY}
    message = store.data[task["focus"]["reference"]]
    mr = store.data[task["input"][0]["valueReference"]["reference"]]
    assert PHARMACY in tenants(message) and PHARMACY in tenants(mr)
    assert [m["id"] for m in released.messages] == [message["id"]]
    reads, sent = store.bundles_sent  # after the Task's search: one batch of reads, one transaction
    assert reads["type"] == "batch"
    assert [e["request"] for e in reads["entry"]] == [
        {"method": "GET", "url": task["focus"]["reference"]},
        {"method": "GET", "url": task["input"][0]["valueReference"]["reference"]},
    ]
    assert sent["type"] == "transaction"  # the move, the labels and the audit event: all or nothing
    assert [e["resource"]["resourceType"] for e in sent["entry"]] == [
        "Task",
        "Bundle",
        "MedicationRequest",
        "AuditEvent",
    ]


def test_a_patient_release_of_an_unknown_prescription_is_epss_not_found():
    with pytest.raises(rules.ReleaseRefused) as raised:
        rules.release_patient(MemoryStore(), patient(new_short_form_id()), now=NOW)
    assert raised.value.status == 400
    assert raised.value.outcome == {
        k: v for k, v in example("spec__errors__release__not-found-error.json").items() if k != "meta"
    }


def test_a_prescription_with_another_dispenser_names_that_dispenser():
    store = MemoryStore()
    store.add(
        {
            "resourceType": "Organization",
            "identifier": [{"system": ODS_SYSTEM, "value": OTHER}],
            "name": "Other Pharmacy",
        }
    )
    task = store.prescription("2025-01-01T10:00:00Z")
    rules.release_patient(store, patient(task["groupIdentifier"]["value"], OTHER), now=NOW)
    with pytest.raises(rules.ReleaseRefused) as raised:
        rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW)
    outcome = raised.value.outcome
    want = example("spec__errors__release__with-another-dispenser-error.json")
    assert outcome["issue"] == want["issue"]
    (org,) = outcome["contained"]
    assert org["identifier"] == [{"system": ODS_SYSTEM, "value": OTHER}] and org["name"] == "Other Pharmacy"
    assert outcome["extension"] == [
        {"url": want["extension"][0]["url"], "valueReference": {"reference": f"#{org['id']}"}}
    ]


def test_the_pharmacy_holding_a_prescription_may_release_it_again():
    """A pharmacy whose answer was lost gets its prescription again by its short-form id."""
    store = MemoryStore()
    task = store.prescription("2025-01-01T10:00:00Z")
    rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW)
    again = rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW)
    assert len(again.messages) == 1


def test_a_patient_release_that_loses_the_race_is_with_another_dispenser():
    store = MemoryStore()
    task = store.prescription("2025-01-01T10:00:00Z")

    def racer():
        current = store.data[f"Task/{task['id']}"]
        store.data[f"Task/{task['id']}"] = with_queue_mark(
            {
                **current,
                "businessStatus": {"coding": [BusinessStatus.WITH_DISPENSER.coding()]},
                "owner": {"identifier": {"system": ODS_SYSTEM, "value": OTHER}},
                "meta": {**current["meta"], "versionId": "2"},
            }
        )

    store.before_write.append(racer)
    with pytest.raises(rules.ReleaseRefused) as raised:
        rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW)
    assert (
        raised.value.outcome["issue"][0]["details"]["coding"][0]["code"]
        == "PRESCRIPTION_WITH_ANOTHER_DISPENSER"
    )
    assert store.data[f"Task/{task['id']}"]["owner"]["identifier"]["value"] == OTHER


# ---------------------------------------------------------------- answers and audit


def test_an_empty_release_is_a_searchset_without_entries():
    bundle = rules.searchset(rules.Released(), "https://proxy.test/fhir/Task/$release")
    assert bundle["type"] == "searchset" and bundle["total"] == 0 and "entry" not in bundle


def test_the_eps_shape_carries_passed_and_failed_prescriptions():
    message = {"resourceType": "Bundle", "id": "1", "identifier": {"value": "abc"}}
    answer = rules.eps_parameters(rules.Released(messages=[message], tasks=[{}]))
    passed, failed = answer["parameter"]
    assert passed["name"] == "passedPrescriptions" and passed["resource"]["entry"][0]["resource"] == message
    assert failed["name"] == "failedPrescriptions" and failed["resource"]["total"] == 0


def test_a_nominated_release_leaves_one_audit_event_for_the_pharmacy_naming_every_task_version():
    store = MemoryStore()
    tasks = [store.prescription(f"2025-01-01T10:0{m}:00Z") for m in range(2)]
    released = rules.release_nominated(store, nominated(), now=NOW, client_id="till-1")
    rules.write_audit(store, released, nominated(), NOW, "till-1")  # stored already: not again
    (event,) = [r for r in store.data.values() if r["resourceType"] == "AuditEvent"]
    assert [e["what"]["reference"] for e in event["entity"]] == [f"Task/{t['id']}/_history/2" for t in tasks]
    assert event["agent"][0]["altId"] == "till-1"
    assert event["agent"][1]["who"]["display"] == "Jackie Clark"
    assert tenants(event) == {PHARMACY}  # the queue's prescribers do not learn of each other


def test_a_patient_releases_audit_event_is_labelled_as_its_task():
    store = MemoryStore()
    task = store.prescription("2025-01-01T10:00:00Z", nominated=OTHER)
    rules.release_patient(store, patient(task["groupIdentifier"]["value"]), now=NOW, client_id="till-1")
    (event,) = [r for r in store.data.values() if r["resourceType"] == "AuditEvent"]
    assert event["entity"][0]["what"]["reference"] == f"Task/{task['id']}"
    assert tenants(event) == {PRESCRIBER, OTHER, PHARMACY}
