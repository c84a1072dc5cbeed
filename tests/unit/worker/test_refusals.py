"""A spoke-to-hub message refused for good fails its spoke's Task, with the reason, audited."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from forwarding.delivery import Delivery, DeliveryKind
from worker.refusals import fail_task, restore_task


class Store:
    """Task/1 at a version; PUT with If-Match checks it; every write is kept."""

    def __init__(self, status="requested"):
        self.task = {"resourceType": "Task", "id": "1", "status": status, "meta": {"versionId": "1"}}
        self.writes: list[tuple[str, str, dict]] = []

    def get(self, path, timeout=10):
        return SimpleNamespace(status_code=200, json=lambda: copy.deepcopy(self.task))

    def write(self, method, path, json=None, timeout=10, headers=None):
        assert headers["If-Match"] == f'W/"{self.task["meta"]["versionId"]}"'
        self.task = {**json, "meta": {"versionId": str(int(self.task["meta"]["versionId"]) + 1)}}
        self.writes.append((method, path, json))
        return SimpleNamespace(status_code=200)

    def post(self, path, json, timeout=10):
        self.writes.append(("POST", path, json))
        return SimpleNamespace(status_code=201)


def message(kind=DeliveryKind.SPOKE_TO_HUB) -> Delivery:
    body = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Task", "id": "1"}}]}
    return Delivery("FA565", "POST", "", body, kind=kind)


def test_a_refused_message_fails_its_task_with_the_reason_and_an_audit_event():
    store = Store()
    assert fail_task(store, message(), "400: no such thing", own_ods="FS1A1")
    assert store.task["status"] == "failed"
    assert store.task["statusReason"]["coding"][0]["code"] == "refused"
    assert store.task["statusReason"]["text"] == "FA565 refused the message: 400: no such thing"
    (put, audit) = store.writes
    assert put[:2] == ("PUT", "Task/1")
    assert audit[1] == "AuditEvent" and audit[2]["subtype"][0]["code"] == "refused"
    assert audit[2]["outcome"] == "8" and audit[2]["entity"][0]["what"] == {"reference": "Task/1"}


def test_a_task_that_moved_on_is_left_alone():
    store = Store(status="cancelled")
    assert not fail_task(store, message(), "400", own_ods="FS1A1")
    assert store.writes == []


def test_only_spoke_to_hub_messages_fail_a_task():
    store = Store()
    assert not fail_task(store, message(DeliveryKind.TASK_CHANGE), "400", own_ods="FS1A1")
    assert store.writes == []


def test_a_replayed_message_delivered_after_all_puts_its_task_back_to_requested():
    store = Store()
    fail_task(store, message(), "400", own_ods="FS1A1")
    assert restore_task(store, message())
    assert store.task["status"] == "requested" and "statusReason" not in store.task


def test_a_task_failed_by_someone_else_is_not_restored():
    store = Store(status="failed")
    assert not restore_task(store, message())
    assert store.writes == []
