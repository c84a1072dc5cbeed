"""Return and withdraw: EPS's Task shapes, its validator's wording, and their effect."""

from __future__ import annotations

import uuid

import pytest

from eps import dispense, release, task_return
from eps import lifecycle as lc
from eps.records import BusinessStatus, business_status, owner_ods, with_status
from proxy.errors import FhirError
from tests.support.eps_lifecycle import (
    NOMINATED,
    NOW,
    OTHER,
    RETURN,
    WITHDRAW,
    MemoryStore,
    dispenser,
    example,
    line_items,
    new_prescription,
    notification,
    released,
)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def return_task(short_id: str, message_id: str) -> dict:
    task = example(RETURN)
    task["groupIdentifier"]["value"] = short_id
    task["focus"]["identifier"]["value"] = message_id
    task["for"]["identifier"]["value"] = "9449305552"
    return task


def withdraw_task(short_id: str, notification_id: str) -> dict:
    task = example(WITHDRAW)
    task["groupIdentifier"]["value"] = short_id
    task["focus"]["identifier"]["value"] = notification_id
    task["for"]["identifier"]["value"] = "9449305552"
    return task


INFORMATIONAL = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "information", "code": "informational"}],
}


def refused(call) -> FhirError:
    with pytest.raises(FhirError) as err:
        call()
    return err.value


def eps_code(err: FhirError) -> str:
    return err.to_resource()["issue"][0]["details"]["coding"][0]["code"]


# -- return


def test_a_returned_prescription_is_to_be_dispensed_again_by_its_nominated_pharmacy(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id, OTHER)  # a patient took it to VNE51
    answer = task_return.handle(return_task(short_id, message_id), dispenser(OTHER), store, NOW)
    assert answer == INFORMATIONAL
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.TO_BE_DISPENSED and task["status"] == "requested"
    assert owner_ods(task) == NOMINATED
    assert OTHER in {s["code"] for s in task["meta"]["security"]}  # it may still see what it held
    (event,) = store.of_type("AuditEvent")
    assert (
        event["subtype"][0]["code"] == "returned"
        and event["purposeOfEvent"][0]["coding"][0]["code"] == "0003"
    )


def test_a_returned_prescription_no_longer_names_who_released_it(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id, OTHER)
    task = store.task(short_id)
    task["contained"] = [{"resourceType": "PractitionerRole", "id": release.AGENT_ID}]
    task["extension"] = [
        {"url": release.AGENT_EXTENSION, "valueReference": {"reference": f"#{release.AGENT_ID}"}},
        {"url": release.RELEASE_ID_EXTENSION, "valueString": "r-1"},
        {"url": "https://example.org/other", "valueString": "kept"},
    ]
    store.put(task)
    task_return.handle(return_task(short_id, message_id), dispenser(OTHER), store, NOW)
    task = store.task(short_id)
    assert "contained" not in task
    assert [e["url"] for e in task["extension"]] == ["https://example.org/other"]


def test_a_returned_prescription_without_a_nomination_is_owned_by_nobody(store):
    short_id, message_id, _ = new_prescription(store, nominated=None)
    released(store, short_id, OTHER)
    task_return.handle(return_task(short_id, message_id), dispenser(OTHER), store, NOW)
    task = store.task(short_id)
    assert "owner" not in task and business_status(task) is BusinessStatus.TO_BE_DISPENSED


def test_items_with_the_dispenser_are_to_be_dispensed_again(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id)
    for item in store.items(short_id):
        store.put(lc.with_item_status(item, lc.WITH_DISPENSER_ITEM))
    task_return.handle(return_task(short_id, message_id), dispenser(), store, NOW)
    assert {lc.item_status(r) for r in store.items(short_id)} == {lc.TO_BE_DISPENSED_ITEM}


def test_a_prescription_with_a_dispense_in_effect_is_withdrawn_before_it_is_returned(store):
    short_id, message_id, message = new_prescription(store)
    released(store, short_id)
    dispense.handle(
        notification(short_id, message_id, {line_items(message)[0]: "0003"}), dispenser(), store, NOW
    )
    err = refused(lambda: task_return.handle(return_task(short_id, message_id), dispenser(), store, NOW))
    assert err.status == 422 and eps_code(err) == "PRESCRIPTION_INVALID_STATE_TRANSITION"


def test_only_the_pharmacy_it_is_with_returns_it(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id, OTHER)
    err = refused(
        lambda: task_return.handle(return_task(short_id, message_id), dispenser(NOMINATED), store, NOW)
    )
    assert err.status == 403 and eps_code(err) == "PRESCRIPTION_WITH_ANOTHER_DISPENSER"
    assert "contained" not in err.to_resource()  # nothing about the other pharmacy


def test_one_the_pharmacy_cannot_see_answers_as_one_that_does_not_exist(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id, OTHER)
    theirs = refused(
        lambda: task_return.handle(return_task(short_id, message_id), dispenser("ZZ999"), store, NOW)
    )
    missing = refused(
        lambda: task_return.handle(
            return_task("FFFFFF-A83008-00000X", message_id), dispenser("ZZ999"), store, NOW
        )
    )
    assert theirs.status == missing.status == 404 and theirs.to_resource() == missing.to_resource()


def test_a_prescription_not_with_a_dispenser_cannot_be_returned(store):
    short_id, message_id, _ = new_prescription(store)
    store.put(with_status(store.task(short_id), BusinessStatus.TO_BE_DISPENSED, owner=NOMINATED))
    err = refused(lambda: task_return.handle(return_task(short_id, message_id), dispenser(), store, NOW))
    assert err.status == 422 and eps_code(err) == "PRESCRIPTION_INVALID_STATE_TRANSITION"


def test_the_focus_must_be_the_prescription_order_message_and_for_its_patient(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id)
    err = refused(
        lambda: task_return.handle(return_task(short_id, str(uuid.uuid4())), dispenser(), store, NOW)
    )
    assert err.status == 400 and err.expression == ["Task.focus.identifier.value"]
    wrong_patient = return_task(short_id, message_id)
    wrong_patient["for"]["identifier"]["value"] = "9999999999"
    err = refused(lambda: task_return.handle(wrong_patient, dispenser(), store, NOW))
    assert err.status == 400 and err.expression == ["Task.for.identifier.value"]


def test_a_racing_change_stores_nothing(store):
    short_id, message_id, _ = new_prescription(store)
    released(store, short_id)
    store.before_commit.append(lambda: store.put(store.task(short_id)))
    err = refused(lambda: task_return.handle(return_task(short_id, message_id), dispenser(), store, NOW))
    assert isinstance(err, lc.Conflict) and err.status == 409
    assert business_status(store.task(short_id)) is BusinessStatus.WITH_DISPENSER


# -- withdraw


def dispensed(store, *notifications: dict[int, str]):
    short_id, message_id, message = new_prescription(store)
    released(store, short_id)
    lines = line_items(message)
    sent = []
    for items in notifications:
        n = notification(short_id, message_id, {lines[i]: code for i, code in items.items()})
        assert dispense.handle(n, dispenser(), store, NOW).code == "ok"
        sent.append(n["identifier"]["value"])
    return short_id, lines, sent


def test_withdrawing_the_only_dispense_puts_the_prescription_back_with_the_dispenser(store):
    short_id, lines, (only,) = dispensed(store, dict.fromkeys(range(4), "0001"))
    assert task_return.handle(withdraw_task(short_id, only), dispenser(), store, NOW) == INFORMATIONAL
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.WITH_DISPENSER and task["status"] == "accepted"
    assert "output" not in task
    assert all(r["status"] == "active" and lc.item_status(r) == "0008" for r in store.items(short_id))
    assert {md["status"] for md in store.of_type("MedicationDispense")} == {"entered-in-error"}
    assert [e["subtype"][0]["code"] for e in store.of_type("AuditEvent")] == ["dispensed", "withdrawn"]


def test_withdrawing_the_last_of_two_leaves_what_the_first_did(store):
    short_id, lines, (first, second) = dispensed(
        store, {0: "0001", 1: "0003"}, {1: "0001", 2: "0001", 3: "0001"}
    )
    assert business_status(store.task(short_id)) is BusinessStatus.DISPENSED
    task_return.handle(withdraw_task(short_id, second), dispenser(), store, NOW)
    task = store.task(short_id)
    assert business_status(task) is BusinessStatus.WITH_DISPENSER_ACTIVE
    assert [o["valueIdentifier"]["value"] for o in task["output"]] == [first]
    by_line = {r["identifier"][0]["value"]: lc.item_status(r) for r in store.items(short_id)}
    assert [by_line[line] for line in lines] == ["0001", "0003", "0008", "0008"]
    statuses = {md["identifier"][-1]["value"]: md["status"] for md in store.of_type("MedicationDispense")}
    assert statuses == {first: "completed", second: "entered-in-error"}


def test_only_the_last_dispense_notification_is_withdrawn(store):
    short_id, _, (first, _second) = dispensed(store, {0: "0003"}, {1: "0003"})
    err = refused(lambda: task_return.handle(withdraw_task(short_id, first), dispenser(), store, NOW))
    assert err.status == 422 and eps_code(err) == "DISPENSE_AMEND_IDENTIFIER_MISMATCH"
    assert err.diagnostics == "Dispense Amendment/Cancellation Request does not pertain to Last Dispense"


def test_nothing_to_withdraw_without_a_dispense_notification(store):
    short_id, _, _ = dispensed(store)
    err = refused(
        lambda: task_return.handle(withdraw_task(short_id, str(uuid.uuid4())), dispenser(), store, NOW)
    )
    assert err.status == 422 and eps_code(err) == "PRESCRIPTION_INVALID_STATE_TRANSITION"


def test_only_the_pharmacy_it_is_with_withdraws(store):
    short_id, _, (only,) = dispensed(store, {0: "0001"})
    err = refused(lambda: task_return.handle(withdraw_task(short_id, only), dispenser("ZZ999"), store, NOW))
    assert err.status == 404


# -- EPS's Task validation, in its words


def test_eps_examples_are_valid():
    assert task_return.validate(example(RETURN)) == "return"
    assert task_return.validate(example(WITHDRAW)) == "withdraw"


@pytest.mark.parametrize(
    ("change", "diagnostics", "expression"),
    [
        ({"status": "completed"}, "Task.status must be one of: 'in-progress', 'rejected'.", "Task.status"),
        ({"intent": "plan"}, "Task.intent must be one of: 'order'.", "Task.intent"),
        (
            {"statusReason": {"coding": [{"system": "http://example.org", "code": "x"}]}},
            "Task.statusReason must have a system of "
            "'https://fhir.nhs.uk/CodeSystem/EPS-task-dispense-return-status-reason' "
            "and a value from that system.",
            "Task.statusReason",
        ),
        (
            {"groupIdentifier": {}},
            "Required field Task.groupIdentifier.value is missing.",
            "Task.groupIdentifier.value",
        ),
        (
            {"focus": {}},
            "Required field Task.focus.identifier.value is missing.",
            "Task.focus.identifier.value",
        ),
        ({"for": {}}, "Required field Task.for.identifier.value is missing.", "Task.for.identifier.value"),
    ],
)
def test_a_return_is_checked_as_eps_checks_it(change, diagnostics, expression):
    task = {**example(RETURN), **change}
    err = refused(lambda: task_return.validate(task))
    assert (err.status, err.diagnostics, err.expression) == (400, diagnostics, [expression])


def test_a_withdraw_needs_a_code_and_it_is_abort():
    task = example(WITHDRAW)
    del task["code"]
    err = refused(lambda: task_return.validate(task))
    assert (err.diagnostics, err.expression) == (
        "Task.code is required when Task.status is 'in-progress'.",
        ["Task.code"],
    )
    task["code"] = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}
    err = refused(lambda: task_return.validate(task))
    assert err.diagnostics == "Task.code.coding.code must be one of: 'abort'."


def test_a_withdraw_reason_comes_from_the_withdraw_reasons():
    task = example(WITHDRAW)
    task["statusReason"] = example(RETURN)["statusReason"]
    err = refused(lambda: task_return.validate(task))
    assert "EPS-task-dispense-withdraw-reason" in err.diagnostics


def test_every_problem_is_reported_at_once():
    task = {**example(WITHDRAW), "intent": "plan", "code": None, "groupIdentifier": None}
    issues = refused(lambda: task_return.validate(task)).to_resource()["issue"]
    assert [i["expression"][0] for i in issues] == ["Task.intent", "Task.code", "Task.groupIdentifier.value"]


def test_not_a_task():
    err = refused(lambda: task_return.validate({"resourceType": "Bundle"}))
    assert err.diagnostics == "Incorrect FHIR resource type. Expected Task."
