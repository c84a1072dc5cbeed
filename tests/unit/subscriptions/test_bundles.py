"""Notifications are history Bundles led by a SubscriptionStatus (R4: Parameters)."""

from subscriptions.bundles import STATUS_PROFILE, notification, status_searchset
from subscriptions.resource import Spec

BASE = "https://fhir.example/fhir"
SPEC = Spec(id="s1", topic="https://fhirplug.org/fhir/SubscriptionTopic/task-status-changed", endpoint="x")
EVENT = {
    "number": 7,
    "timestamp": "2026-01-01T00:00:00Z",
    "focus": "Task/t1",
    "method": "PUT",
    "resource": {"id": "t1"},
}


def params(bundle):
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters" and status["meta"]["profile"] == [STATUS_PROFILE]
    return status["parameter"]


def value(bundle, name):
    p = next(p for p in params(bundle) if p["name"] == name)
    return next(v for k, v in p.items() if k.startswith("value"))


def test_an_event_notification_numbers_its_event_and_names_its_focus():
    b = notification(SPEC, BASE, "event-notification", 7, [EVENT])
    assert b["type"] == "history" and value(b, "type") == "event-notification"
    assert value(b, "events-since-subscription-start") == "7"
    event = next(p for p in params(b) if p["name"] == "notification-event")
    parts = {p["name"]: p for p in event["part"]}
    assert parts["event-number"]["valueString"] == "7"
    assert parts["focus"]["valueReference"]["reference"] == f"{BASE}/Task/t1"
    assert b["entry"][1]["fullUrl"] == f"{BASE}/Task/t1" and "resource" not in b["entry"][1]
    assert b["entry"][0]["request"]["url"] == f"{BASE}/Subscription/s1/$status"


def test_full_resource_carries_it_and_empty_names_nothing():
    assert notification(SPEC, BASE, "event-notification", 7, [EVENT], "full-resource")["entry"][1]["resource"]
    empty = notification(SPEC, BASE, "event-notification", 7, [EVENT], "empty")
    assert len(empty["entry"]) == 1
    event = next(p for p in params(empty) if p["name"] == "notification-event")
    assert {p["name"] for p in event["part"]} == {"event-number", "timestamp"}


def test_a_handshake_and_a_status_answer():
    assert value(notification(SPEC, BASE, "handshake", 0, []), "type") == "handshake"
    s = status_searchset(SPEC, BASE, 3)
    assert s["type"] == "searchset" and value(s, "type") == "query-status"
