"""The outbox record format: a delivery as a Basic resource, and back."""

from forwarding.delivery import Delivery, DeliveryKind
from forwarding.outbox import (
    DELIVERY_EXTENSION,
    OUTBOX_SYSTEM,
    delivery_of,
    expected_version_of,
    record,
    subject_of,
)


def test_a_record_carries_the_whole_delivery_under_its_id():
    d = Delivery("FA1", "PATCH", "Task/9", [{"op": "remove", "path": "/note"}], kind=DeliveryKind.TASK_CHANGE)
    basic = record(d, "Task/7", "3")
    assert basic["resourceType"] == "Basic" and basic["id"] == d.id
    assert basic["code"]["coding"] == [{"system": OUTBOX_SYSTEM, "code": "delivery"}]
    assert subject_of(basic) == "Task/7" and expected_version_of(basic) == "3"
    assert delivery_of(basic) == d


def test_a_message_record_has_no_expected_version_and_tells_the_hub_our_task_id():
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Task"}}]}
    d = Delivery("FA1", "POST", "", bundle, kind=DeliveryKind.SPOKE_TO_HUB)
    basic = record(d, "urn:uuid:1")
    assert expected_version_of(basic) is None
    assert [e["url"] for e in basic["extension"]] == [DELIVERY_EXTENSION]
    basic["subject"] = {"reference": "Task/42"}  # as the store resolves the bundle's reference
    assert delivery_of(basic).body["entry"][0]["resource"]["id"] == "42"
