"""The seed's topics fire once, on the write that makes the change, not on later updates."""

from subscriptions.topics import BASE, TOPIC_TYPES, TOPICS

ACTIVE = TOPICS[BASE + "medication-request-active"]
DISPENSED = TOPICS[BASE + "medication-dispense-completed"]
TASK = TOPICS[BASE + "task-status-changed"]


def test_a_request_becomes_active_on_create_or_from_another_status_only():
    assert ACTIVE.trigger({"status": "active"}, None)
    assert ACTIVE.trigger({"status": "active"}, {"status": "draft"})
    assert not ACTIVE.trigger({"status": "active"}, {"status": "active"})
    assert not ACTIVE.trigger({"status": "draft"}, None)


def test_a_dispense_completes_once():
    assert DISPENSED.trigger({"status": "completed"}, {"status": "in-progress"})
    assert not DISPENSED.trigger({"status": "completed"}, {"status": "completed"})
    assert not DISPENSED.trigger({"status": "in-progress"}, None)


def test_a_task_status_change_is_any_new_status_and_every_create():
    assert TASK.trigger({"status": "requested"}, None)
    assert TASK.trigger({"status": "accepted"}, {"status": "requested"})
    assert not TASK.trigger({"status": "accepted", "note": [{}]}, {"status": "accepted"})


def test_only_the_topics_types_are_ever_looked_at():
    assert {"MedicationRequest", "MedicationDispense", "Task"} == TOPIC_TYPES
