"""The delivery value: its kind and label, and its plain-dict form (the RQ job's argument and
the outbox record's content), including records written before deliveries had a kind."""

import json

from forwarding.delivery import Delivery, DeliveryKind


def test_the_label_is_the_kind_or_the_tasks_new_status():
    assert Delivery("FA1", "POST", "", {}).label == "message"
    assert Delivery("FA1", "POST", "", {}, kind=DeliveryKind.SPOKE_TO_HUB).label == "spoke-to-hub message"
    assert Delivery("FA1", "POST", "", {}, kind=DeliveryKind.HUB_TO_SPOKE).label == "hub-to-spoke dispense"
    change = Delivery("FA1", "PATCH", "Task/1", [], kind=DeliveryKind.TASK_CHANGE, task_status="accepted")
    assert change.label == "Task accepted"


def test_the_dict_form_is_plain_json_and_reads_back_the_same():
    d = Delivery(
        "FA1", "PATCH", "Task/1", [{"op": "add"}], kind=DeliveryKind.TASK_CHANGE, task_status="failed"
    )
    data = json.loads(json.dumps(d.to_dict()))
    assert data["kind"] == "Task" and type(d.to_dict()["kind"]) is str
    back = Delivery.from_dict(data)
    assert back == d and back.kind is DeliveryKind.TASK_CHANGE


def test_a_record_from_before_the_kind_keeps_its_meaning():
    base = {"partner": "FA1", "method": "POST", "path": "", "body": {}, "id": "x", "queued_at": 1.0}
    assert Delivery.from_dict({**base, "what": "spoke-to-hub message"}).kind is DeliveryKind.SPOKE_TO_HUB
    assert Delivery.from_dict({**base, "what": "hub-to-spoke dispense"}).kind is DeliveryKind.HUB_TO_SPOKE
    old = Delivery.from_dict({**base, "what": "Task in-progress"})
    assert (old.kind, old.task_status, old.label) == (
        DeliveryKind.TASK_CHANGE,
        "in-progress",
        "Task in-progress",
    )
    assert Delivery.from_dict({**base, "what": "message"}).kind is DeliveryKind.MESSAGE
