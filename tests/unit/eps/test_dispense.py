"""dispense-notification: the pharmacy a prescription is with records what it dispensed."""

from __future__ import annotations

import uuid

import pytest

from eps import dispense
from eps import lifecycle as lc
from eps.records import MESSAGE_KEY_SYSTEM, BusinessStatus, business_status, with_status
from proxy.errors import FhirError
from tests.support.eps_lifecycle import (
    NOMINATED,
    NOW,
    OTHER,
    PRESCRIBER_SENDER,
    MemoryStore,
    dispenser,
    line_items,
    new_prescription,
    notification,
    released,
)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def dispensed_prescription(store, codes):
    short_id, message_id, message = new_prescription(store)
    released(store, short_id)
    lines = line_items(message)
    items = dict(zip(lines, codes, strict=False))
    return short_id, message_id, lines, notification(short_id, message_id, items)


def test_every_item_fully_dispensed_completes_the_prescription(store):
    short_id, message_id, lines, message = dispensed_prescription(store, ["0001"] * 4)
    result = dispense.handle(message, dispenser(), store, NOW)
    assert (result.code, result.status) == ("ok", 200)
    assert result.outcome == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.DISPENSED and task["status"] == "completed"
    assert all(r["status"] == "completed" and lc.item_status(r) == "0001" for r in store.items(short_id))


def test_a_partial_dispense_leaves_the_prescription_with_the_dispenser_active(store):
    short_id, _, lines, message = dispensed_prescription(store, ["0001", "0003"])
    dispense.handle(message, dispenser(), store, NOW)
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.WITH_DISPENSER_ACTIVE and task["status"] == "in-progress"
    by_line = {r["identifier"][0]["value"]: r for r in store.items(short_id)}
    assert by_line[lines[0]]["status"] == "completed" and lc.item_status(by_line[lines[0]]) == "0001"
    assert by_line[lines[1]]["status"] == "active" and lc.item_status(by_line[lines[1]]) == "0003"
    assert lc.item_status(by_line[lines[2]]) == "0008"  # with the dispenser, not named yet


def test_a_later_notification_completes_what_an_earlier_one_left(store):
    short_id, message_id, lines, first = dispensed_prescription(store, ["0001", "0001"])
    dispense.handle(first, dispenser(), store, NOW)
    rest = notification(short_id, message_id, {lines[2]: "0001", lines[3]: "0002"})
    dispense.handle(rest, dispenser(), store, NOW)
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.DISPENSED
    assert [o["valueIdentifier"]["value"] for o in task["output"]] == [
        first["identifier"]["value"],
        rest["identifier"]["value"],
    ]


def test_nothing_dispensed_at_all_is_not_dispensed(store):
    short_id, _, _, message = dispensed_prescription(store, ["0002"] * 4)
    dispense.handle(message, dispenser(), store, NOW)
    assert business_status(store.task(short_id)) is BusinessStatus.NOT_DISPENSED


def references(value) -> list[str]:
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "reference"] + [
            r for k, v in value.items() if k != "reference" for r in references(v)
        ]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def test_the_dispenses_are_stored_labelled_pointing_at_the_line_items_in_the_one_transaction(store):
    short_id, _, lines, message = dispensed_prescription(store, ["0001", "0001"])
    dispense.handle(message, dispenser(), store, NOW)
    (tx,) = store.transactions
    types = [e["resource"]["resourceType"] for e in tx["entry"]]
    assert types.count("MedicationDispense") == 2 and "AuditEvent" in types
    # the pharmacy's Organization travels contained: a stored copy per notification would make a
    # conditional create by its ODS code match several (HAPI-0958)
    assert "Organization" not in types
    assert all("ifMatch" in e["request"] for e in tx["entry"] if e["request"]["method"] == "PUT")
    stored = store.of_type("MedicationDispense")
    items = {f"MedicationRequest/{r['id']}" for r in store.items(short_id)}
    for md in stored:
        assert md["authorizingPrescription"][0]["reference"] in items
        assert {"system": lc.NOTIFICATION_SYSTEM, "value": message["identifier"]["value"]} in md["identifier"]
        assert {s["code"] for s in md["meta"]["security"]} == {"A83008", NOMINATED}
        assert sorted(c["resourceType"] for c in md["contained"]) == ["Organization", "PractitionerRole"]
        local = {f"#{c['id']}" for c in md["contained"]}
        assert all(r.startswith("#") and r in local for r in references(md["contained"]))
    (event,) = store.of_type("AuditEvent")
    assert event["subtype"][0]["code"] == "dispensed" and event["agent"][0]["altId"] == "pharmacy-fa565"


def test_only_the_pharmacy_it_is_with_may_dispense_it(store):
    short_id, _, _, message = dispensed_prescription(store, ["0001"])
    released(store, short_id, OTHER)  # now with VNE51; FA565, nominated, still sees it
    result = dispense.handle(message, dispenser(NOMINATED), store, NOW)
    assert (result.status, result.code) == (403, "fatal-error")
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "PRESCRIPTION_WITH_ANOTHER_DISPENSER"
    assert store.transactions == []


def test_a_prescription_the_pharmacy_cannot_see_is_not_found(store):
    short_id, _, _, message = dispensed_prescription(store, ["0001"])
    result = dispense.handle(message, dispenser("ZZ999"), store, NOW)
    assert result.status == 404
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "RESOURCE_NOT_FOUND"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (BusinessStatus.TO_BE_DISPENSED, "PRESCRIPTION_INVALID_STATE_TRANSITION"),
        (BusinessStatus.CANCELLED, "PRESCRIPTION_CANCELLED"),
        (BusinessStatus.DISPENSED, "PRESCRIPTION_DISPENSED"),
        (BusinessStatus.EXPIRED, "PRESCRIPTION_EXPIRED"),
    ],
)
def test_only_a_released_prescription_is_dispensed(store, status, code):
    short_id, _, _, message = dispensed_prescription(store, ["0001"])
    store.put(with_status(store.task(short_id), status, owner=NOMINATED))
    result = dispense.handle(message, dispenser(), store, NOW)
    assert result.status == 422
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == code


def test_an_item_not_on_the_prescription_is_not_found(store):
    short_id, message_id, _, _ = dispensed_prescription(store, [])
    message = notification(short_id, message_id, {str(uuid.uuid4()): "0001"})
    result = dispense.handle(message, dispenser(), store, NOW)
    assert result.outcome["issue"][0]["details"]["coding"][0]["code"] == "MEDICATIONREQUEST_NOT_FOUND"


def test_an_item_already_fully_dispensed_cannot_change(store):
    short_id, message_id, lines, message = dispensed_prescription(store, ["0001"])
    dispense.handle(message, dispenser(), store, NOW)
    again = notification(short_id, message_id, {lines[0]: "0003"})
    result = dispense.handle(again, dispenser(), store, NOW)
    assert result.status == 422
    assert (
        result.outcome["issue"][0]["details"]["coding"][0]["code"]
        == "MEDICATIONREQUEST_INVALID_STATE_TRANSITION"
    )


def test_the_response_identifier_must_name_the_prescription_order_message(store):
    short_id, _, lines, _ = dispensed_prescription(store, [])
    message = notification(short_id, str(uuid.uuid4()), {lines[0]: "0001"})
    with pytest.raises(FhirError) as err:
        dispense.handle(message, dispenser(), store, NOW)
    assert err.value.status == 400
    assert err.value.expression == ["Bundle.entry.resource.ofType(MessageHeader).response.identifier"]


def test_a_racing_change_stores_nothing_and_may_be_resent(store):
    short_id, _, _, message = dispensed_prescription(store, ["0001"])
    store.before_commit.append(lambda: store.put(store.task(short_id)))
    result = dispense.handle(message, dispenser(), store, NOW)
    assert (result.code, result.status) == ("transient-error", 503)
    assert not store.of_type("MedicationDispense") and not store.of_type("AuditEvent")
    assert business_status(store.task(short_id)) is BusinessStatus.WITH_DISPENSER


def test_the_same_notification_twice_is_refused(store):
    _, _, _, message = dispensed_prescription(store, ["0003"])
    dispense.handle(message, dispenser(), store, NOW)
    with pytest.raises(FhirError) as err:
        dispense.handle(message, dispenser(), store, NOW)
    assert err.value.status == 409


def test_malformed_dispenses_are_refused_with_every_problem_at_once(store):
    short_id, message_id, lines, _ = dispensed_prescription(store, [])
    message = notification(short_id, message_id, {lines[0]: "0001", lines[1]: "0001"})
    first, second = (
        e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "MedicationDispense"
    )
    first["authorizingPrescription"] = [{"reference": "#nowhere"}]
    second["type"]["coding"][0]["system"] = "http://example.org/other"
    second["extension"] = []
    del message["entry"][0]["resource"]["response"]
    with pytest.raises(FhirError) as err:
        dispense.handle(message, dispenser(), store, NOW)
    issues = err.value.to_resource()["issue"]
    assert [i["expression"][0] for i in issues] == [
        "Bundle.entry.resource.ofType(MessageHeader).response.identifier",
        "Bundle.entry[1].resource.authorizingPrescription",
        "Bundle.entry[2].resource.type",
        "Bundle.entry[2].resource.extension",
    ]


def test_only_dispensers_send_dispense_notifications(store):
    _, _, _, message = dispensed_prescription(store, ["0001"])
    with pytest.raises(FhirError) as err:
        dispense.handle(message, PRESCRIBER_SENDER, store, NOW)
    assert err.value.status == 403


def test_the_prescription_order_may_be_named_by_its_bundle_id_too(store):
    """$process-message keys a message by Bundle.id; its identifier is what the stored copy keeps."""
    short_id, _, lines, _ = dispensed_prescription(store, [])
    task = store.task(short_id)
    bundle_id = str(uuid.uuid4())
    for identifier in task["identifier"]:
        if identifier["system"] == MESSAGE_KEY_SYSTEM:
            identifier["value"] = f"A83008/{bundle_id}"
    store.put(task)
    result = dispense.handle(
        notification(short_id, bundle_id.upper(), {lines[0]: "0001"}), dispenser(), store, NOW
    )
    assert result.code == "ok"
