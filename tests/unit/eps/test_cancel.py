"""prescription-order-update: a prescriber cancels a line item; EPS's reasons when it cannot."""

from __future__ import annotations

import copy

import pytest

from eps import cancel
from eps.events import Sender
from eps.records import BusinessStatus, business_status, with_status
from proxy.errors import FhirError
from tests.support.eps_lifecycle import (
    CANCEL,
    NOW,
    PRESCRIBER_SENDER,
    MemoryStore,
    example,
    line_items,
    new_prescription,
    released,
)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def cancellation(short_id: str, line_item: str) -> dict:
    """EPS's Cancel example, naming our prescription and one of its line items."""
    message = example(CANCEL)
    request = next(
        e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    request["groupIdentifier"]["value"] = short_id
    request["identifier"][0]["value"] = line_item
    return message


def the_request(message: dict) -> dict:
    return next(
        e["resource"] for e in message["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )


def details(result) -> tuple[str, str]:
    coding = result.outcome["issue"][0]["details"]["coding"][0]
    return coding["code"], coding["display"]


def test_a_line_item_is_cancelled_with_its_reason_and_the_prescription_stays_to_be_dispensed(store):
    short_id, _, message = new_prescription(store)
    first = line_items(message)[0]
    result = cancel.handle(cancellation(short_id, first), PRESCRIBER_SENDER, store, NOW)
    assert (result.code, result.status) == ("ok", 200)
    assert details(result) == ("R-0001", "Prescription/item was cancelled")
    assert result.outcome["issue"][0]["severity"] == "information"
    item = next(r for r in store.items(short_id) if r["identifier"][0]["value"] == first)
    assert item["status"] == "cancelled" and item["statusReason"]["coding"][0]["code"] == "0001"
    others = [r for r in store.items(short_id) if r is not item]
    assert all(r["status"] == "active" for r in others)
    assert business_status(store.task(short_id)) is BusinessStatus.TO_BE_DISPENSED


def test_cancelling_every_line_item_cancels_the_prescription(store):
    short_id, _, message = new_prescription(store)
    for line in line_items(message):
        assert cancel.handle(cancellation(short_id, line), PRESCRIBER_SENDER, store, NOW).code == "ok"
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.CANCELLED and task["status"] == "cancelled"


def test_the_change_and_its_audit_event_are_one_transaction_guarded_by_the_versions_read(store):
    short_id, _, message = new_prescription(store)
    cancel.handle(cancellation(short_id, line_items(message)[0]), PRESCRIBER_SENDER, store, NOW)
    (tx,) = store.transactions
    puts = [e for e in tx["entry"] if e["request"]["method"] == "PUT"]
    assert {e["resource"]["resourceType"] for e in puts} == {"MedicationRequest", "Task"}
    assert all(e["request"]["ifMatch"].startswith('W/"') for e in puts)
    (event,) = [e["resource"] for e in tx["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert event["subtype"][0]["code"] == "cancelled" and event["agent"][0]["altId"] == "gp-system"
    assert event["entity"][0]["what"]["reference"].startswith("Task/")


@pytest.mark.parametrize(
    ("status", "code", "display"),
    [
        (BusinessStatus.WITH_DISPENSER, "R-0002", "Prescription/item was not cancelled. With dispenser."),
        (
            BusinessStatus.WITH_DISPENSER_ACTIVE,
            "R-0003",
            "Prescription/item was not cancelled. With dispenser active.",
        ),
        (
            BusinessStatus.DISPENSED,
            "R-0004",
            "Prescription/item was not cancelled. Prescription has been dispensed.",
        ),
        (BusinessStatus.EXPIRED, "R-0005", "Prescription/item has expired"),
        (BusinessStatus.CANCELLED, "R-0006", "Prescription/item had already been cancelled"),
    ],
)
def test_refused_with_eps_reasons_once_the_prescription_has_moved_on(store, status, code, display):
    short_id, _, message = new_prescription(store)
    store.put(with_status(store.task(short_id), status, owner="FA565"))
    result = cancel.handle(cancellation(short_id, line_items(message)[0]), PRESCRIBER_SENDER, store, NOW)
    assert (result.code, result.status) == ("fatal-error", 422)
    assert details(result) == (code, display)
    assert result.outcome["issue"][0]["code"] == "business-rule"
    assert store.transactions == []


def test_a_released_prescription_is_with_a_dispenser(store):
    short_id, _, message = new_prescription(store)
    released(store, short_id)
    result = cancel.handle(cancellation(short_id, line_items(message)[0]), PRESCRIBER_SENDER, store, NOW)
    assert details(result)[0] == "R-0002"


def test_an_item_already_cancelled_is_refused_as_such(store):
    short_id, _, message = new_prescription(store)
    message_ = cancellation(short_id, line_items(message)[0])
    cancel.handle(message_, PRESCRIBER_SENDER, store, NOW)
    again = cancel.handle(message_, PRESCRIBER_SENDER, store, NOW)
    assert details(again) == ("R-0006", "Prescription/item had already been cancelled")


def test_another_prescribers_prescription_is_not_found_as_one_that_does_not_exist(store):
    short_id, _, message = new_prescription(store)
    line = line_items(message)[0]
    stranger = Sender("other-gp", "prescriber", "B12345")
    theirs = cancel.handle(cancellation(short_id, line), stranger, store, NOW)
    missing = cancel.handle(cancellation("FFFFFF-A83008-00000X", line), PRESCRIBER_SENDER, store, NOW)
    assert (theirs.status, theirs.outcome) == (missing.status, missing.outcome) == (404, missing.outcome)
    assert details(missing) == ("R-0008", "Prescription/item not found")


def test_an_unknown_line_item_is_not_found(store):
    short_id, _, _ = new_prescription(store)
    result = cancel.handle(
        cancellation(short_id, "0b0b0b0b-0000-0000-0000-000000000000"), PRESCRIBER_SENDER, store, NOW
    )
    assert details(result)[0] == "R-0008" and result.status == 404


def test_a_racing_change_stores_nothing_and_may_be_resent(store):
    short_id, _, message = new_prescription(store)
    store.before_commit.append(lambda: store.put(store.task(short_id)))  # someone else moved it
    result = cancel.handle(cancellation(short_id, line_items(message)[0]), PRESCRIBER_SENDER, store, NOW)
    assert (result.code, result.status) == ("transient-error", 503)
    assert all(r["status"] == "active" for r in store.items(short_id))
    assert not store.of_type("AuditEvent")


def test_exactly_one_medication_request_in_eps_words(store):
    message = cancellation("X", "Y")
    message["entry"].append(
        copy.deepcopy(
            next(e for e in message["entry"] if e["resource"]["resourceType"] == "MedicationRequest")
        )
    )
    with pytest.raises(FhirError) as err:
        cancel.handle(message, PRESCRIBER_SENDER, store, NOW)
    assert err.value.status == 400
    assert err.value.diagnostics == (
        "The Bundle must contain exactly one MedicationRequest if MessageHeader.eventCoding.code is "
        "'prescription-order-update'."
    )
    assert err.value.expression == ["Bundle.entry.resource.ofType(MedicationRequest)"]


def test_status_cancelled_and_a_status_reason_are_required_in_eps_words(store):
    message = cancellation("X", "Y")
    request = the_request(message)
    request["status"] = "active"
    del request["statusReason"]
    with pytest.raises(FhirError) as err:
        cancel.handle(message, PRESCRIBER_SENDER, store, NOW)
    problems = [i["diagnostics"] for i in err.value.to_resource()["issue"]]
    assert problems == [
        "MedicationRequest.status must be cancelled.",
        "Expected MedicationRequest to have a value for statusReason.",
    ]
    expressions = [i["expression"][0] for i in err.value.to_resource()["issue"]]
    assert expressions[1] == "Bundle.entry.resource.ofType(MedicationRequest).statusReason"


def test_the_prescription_and_line_item_must_be_named(store):
    message = cancellation("X", "Y")
    request = the_request(message)
    del request["groupIdentifier"]["value"]
    request["identifier"] = []
    with pytest.raises(FhirError) as err:
        cancel.handle(message, PRESCRIBER_SENDER, store, NOW)
    assert [i["expression"][0] for i in err.value.to_resource()["issue"]] == [
        "Bundle.entry.resource.ofType(MedicationRequest).groupIdentifier.value",
        "Bundle.entry.resource.ofType(MedicationRequest).identifier",
    ]


def test_only_prescribers_cancel(store):
    short_id, _, message = new_prescription(store)
    with pytest.raises(FhirError) as err:
        cancel.handle(
            cancellation(short_id, line_items(message)[0]), Sender("p", "dispenser", "FA565"), store, NOW
        )
    assert err.value.status == 403
