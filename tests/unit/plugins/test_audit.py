"""Audit: an AuditEvent for each hand-off, stored with the message or after the Task change."""

import json
from pathlib import Path

from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM, TENANT_SYSTEM
from plugins.audit import Audit
from proxy.context import Client, Message, StorageOutcome, WriteEntry
from tests.support.fake_store import FakeStore
from tests.support.plugin_context import request_context

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"
SPOKE = Client("spoke-system", "FS1A1", "spoke")
HUB = Client("hub-system", "FA565", "hub")
LABELS = [{"system": TENANT_SYSTEM, "code": "FA565"}, {"system": TENANT_SYSTEM, "code": "FS1A1"}]


def message(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def with_message(kind: str, client: Client):
    ctx = request_context("transaction", "POST", client=client)
    ctx.message = Message(kind, "digest", client.ods, client.id)
    ctx.request_id = "r1"
    return ctx


def audit_events(bundle: dict) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "AuditEvent"]


def test_a_received_message_gets_its_audit_event_in_the_same_transaction():
    bundle = message("valid-spoke-to-hub")
    Audit(own_ods="FA565").fhirplug_before_bundle(ctx=with_message("spoke-to-hub", SPOKE), bundle=bundle)
    [added] = audit_events(bundle)
    assert added["request"] == {"method": "POST", "url": "AuditEvent"}
    event = added["resource"]
    assert event["subtype"] == [{"system": HANDOFF_SYSTEM, "code": "received"}]
    assert event["action"] == "C"
    assert event["entity"][0]["what"] == {"reference": bundle["entry"][0]["fullUrl"]}
    assert event["entity"][0]["description"] == "request r1"


def test_the_audit_event_names_the_partner_and_this_deployment():
    bundle = message("valid-spoke-to-hub")
    Audit(own_ods="FA565").fhirplug_before_bundle(ctx=with_message("spoke-to-hub", SPOKE), bundle=bundle)
    event = audit_events(bundle)[0]["resource"]
    agent = event["agent"][0]
    assert agent["who"]["identifier"] == {"system": ODS_SYSTEM, "value": "FS1A1"}
    assert agent["altId"] == "spoke-system"
    assert event["source"]["observer"]["identifier"] == {"system": ODS_SYSTEM, "value": "FA565"}


def test_a_dispense_message_is_audited_against_the_task_it_patches():
    bundle = message("valid-hub-to-spoke")
    Audit(own_ods="FS1A1").fhirplug_before_bundle(ctx=with_message("hub-to-spoke", HUB), bundle=bundle)
    event = audit_events(bundle)[0]["resource"]
    assert event["subtype"][0]["code"] == "dispensed"
    assert event["entity"][0]["what"] == {"reference": bundle["entry"][0]["request"]["url"]}


def test_a_bundle_that_is_no_message_is_not_audited():
    ctx = request_context("transaction", "POST", client=SPOKE)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    Audit(own_ods="FA565").fhirplug_before_bundle(ctx=ctx, bundle=bundle)
    assert bundle["entry"] == []


def stored_after(kind: str, task: dict, status: int = 200) -> FakeStore:
    store = FakeStore(status=201, body={"resourceType": "AuditEvent", "id": "a1"})
    ctx = request_context(kind, "PATCH", "Task", "1", client=HUB, store=store)
    entry = WriteEntry("PUT", "Task/1", task)
    Audit(own_ods="FA565").fhirplug_after_storage(
        ctx=ctx, entry=entry, outcome=StorageOutcome(status, resource=task)
    )
    return store


def test_a_task_change_is_audited_once_stored_with_the_tasks_labels():
    task = {"resourceType": "Task", "id": "1", "status": "accepted", "meta": {"security": LABELS}}
    [call] = stored_after("patch", task).calls
    assert (call["method"], call["path"]) == ("POST", "AuditEvent")
    event = call["body"]
    assert event["subtype"][0]["code"] == "accepted"
    assert event["action"] == "U"
    assert event["entity"][0]["what"] == {"reference": "Task/1"}
    assert event["meta"]["security"] == LABELS


def test_a_task_status_that_is_no_hand_off_is_recorded_as_updated():
    task = {"resourceType": "Task", "id": "1", "status": "draft"}
    assert stored_after("update", task).calls[0]["body"]["subtype"][0]["code"] == "updated"


def test_a_refused_task_change_is_not_audited():
    task = {"resourceType": "Task", "id": "1", "status": "accepted"}
    assert stored_after("patch", task, status=409).calls == []


def test_a_task_created_by_a_plain_write_is_not_audited_here():
    task = {"resourceType": "Task", "id": "1", "status": "requested"}
    assert stored_after("create", task).calls == []
