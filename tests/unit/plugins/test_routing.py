"""Routing: an intent to forward is recorded with what this deployment stored, and queued after."""

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from forwarding import outbox
from forwarding.delivery import DeliveryKind
from hubspoke.identifiers import ODS_SYSTEM, PARTNER_TASK_SYSTEM
from plugins import routing as routing_module
from plugins.routing import Routing
from proxy.context import Client, Message, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.partners import KEY, Partner
from tests.support.fake_redis import FakeRedis
from tests.support.plugin_context import ScriptedStore, request_context, searchset

EXAMPLES = Path(__file__).resolve().parents[3] / "ig" / "examples"
OWN_SPOKE = Client("spoke-system", "FS1A1", "spoke")  # this deployment's own spoke system
HUB_ODS = "FA565"


def message(name: str = "valid-spoke-to-hub") -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def directory(*partners: str) -> FakeRedis:
    redis = FakeRedis()
    for ods in partners:
        partner = Partner(ods, "hub", f"https://{ods}.example/fhir", "https://t", "us", "/k.json")
        redis.hset(KEY, ods, json.dumps(asdict(partner)))
    return redis


def with_message(client: Client, kind: str = "spoke-to-hub", store: ScriptedStore | None = None):
    ctx = request_context("transaction", "POST", client=client, store=store)
    ctx.message = Message(kind, "digest", client.ods, client.id)
    ctx.request_id = "r1"
    return ctx


def outbox_entries(bundle: dict) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Basic"]


@pytest.fixture
def queued(monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(routing_module, "enqueue", lambda delivery, redis: sent.append(delivery))
    return sent


def test_a_spoke_to_hub_message_gets_an_outbox_record_in_its_transaction():
    bundle = message()
    as_sent = json.loads(json.dumps(bundle))
    Routing(directory(HUB_ODS), own_ods="FS1A1").fhirplug_before_bundle(
        ctx=with_message(OWN_SPOKE), bundle=bundle
    )
    [added] = outbox_entries(bundle)
    delivery = outbox.delivery_of(added["resource"])
    assert added["request"] == {"method": "PUT", "url": f"Basic/{delivery.id}"}
    assert outbox.subject_of(added["resource"]) == bundle["entry"][0]["fullUrl"]
    assert (delivery.partner, delivery.method, delivery.path) == (HUB_ODS, "POST", "")
    assert delivery.kind is DeliveryKind.SPOKE_TO_HUB
    assert delivery.body == as_sent  # the partner gets the message as sent, before our amendments


def test_nothing_is_forwarded_for_a_caller_that_is_not_this_deployment():
    bundle = message()
    partner_spoke = Client("their-worker", "FS2B2", "spoke")
    Routing(directory(HUB_ODS), own_ods="FS1A1").fhirplug_before_bundle(
        ctx=with_message(partner_spoke), bundle=bundle
    )
    assert outbox_entries(bundle) == []


def test_a_message_to_a_hub_that_is_no_partner_is_refused():
    with pytest.raises(FhirError) as raised:
        Routing(directory(), own_ods="FS1A1").fhirplug_before_bundle(
            ctx=with_message(OWN_SPOKE), bundle=message()
        )
    assert raised.value.status == 422


def test_an_eps_system_registered_for_its_async_answers_is_no_hub_to_forward_to():
    redis = FakeRedis()
    task_owner = message()["entry"][0]["resource"]["owner"]["identifier"]["value"]
    partner = Partner(task_owner, "prescriber", "https://gp.example/fhir", "https://t", "us", "/k.json")
    redis.hset(KEY, task_owner, json.dumps(asdict(partner)))
    with pytest.raises(FhirError) as raised:
        Routing(redis, own_ods="FS1A1").fhirplug_before_bundle(ctx=with_message(OWN_SPOKE), bundle=message())
    assert raised.value.status == 422


def test_a_message_to_this_deployment_is_not_forwarded():
    bundle = message()
    own_hub = Client("hub-desk", HUB_ODS, "hub")
    Routing(directory(HUB_ODS), own_ods=HUB_ODS).fhirplug_before_bundle(
        ctx=with_message(own_hub), bundle=bundle
    )
    assert outbox_entries(bundle) == []


def test_the_delivery_is_queued_once_its_outbox_record_is_stored(queued):
    bundle = message()
    ctx = with_message(OWN_SPOKE)
    plugin = Routing(directory(HUB_ODS), own_ods="FS1A1")
    plugin.fhirplug_before_bundle(ctx=ctx, bundle=bundle)
    basic = outbox_entries(bundle)[0]
    task = WriteEntry("POST", "Task", bundle["entry"][0]["resource"], index=0)
    plugin.fhirplug_after_storage(
        ctx=ctx, entry=task, outcome=StorageOutcome(201, location="Task/77/_history/1")
    )
    assert queued == []
    record = WriteEntry("PUT", basic["request"]["url"], basic["resource"], index=len(bundle["entry"]) - 1)
    plugin.fhirplug_after_storage(ctx=ctx, entry=record, outcome=StorageOutcome(201))
    [delivery] = queued
    assert delivery.body["entry"][0]["resource"]["id"] == "77"  # how the hub will address our Task


def hub_task(status: str) -> dict:
    return {
        "resourceType": "Task",
        "id": "5",
        "meta": {"versionId": "2"},
        "status": status,
        "identifier": [{"system": PARTNER_TASK_SYSTEM, "value": "FS1A1/spoke-task-1"}],
        "requester": {"identifier": {"system": ODS_SYSTEM, "value": "FS1A1"}},
        "owner": {"identifier": {"system": ODS_SYSTEM, "value": HUB_ODS}},
    }


def test_a_hubs_task_change_is_recorded_for_the_requesting_spoke_before_it_is_stored():
    store = ScriptedStore({("GET", "Task/5"): hub_task("requested"), ("PUT", "Basic/*"): {}})
    ctx = request_context(
        "patch", "PATCH", "Task", "5", client=Client("hub-desk", HUB_ODS, "hub"), store=store
    )
    entry = WriteEntry("PUT", "Task/5", hub_task("accepted"))
    Routing(directory("FS1A1"), own_ods=HUB_ODS).fhirplug_before_storage(ctx=ctx, entry=entry)
    [put] = [c for c in store.calls if c["method"] == "PUT"]
    delivery = outbox.delivery_of(put["body"])
    assert (delivery.partner, delivery.method, delivery.path) == ("FS1A1", "PATCH", "Task/spoke-task-1")
    assert delivery.body == [{"op": "add", "path": "/status", "value": "accepted"}]
    assert outbox.expected_version_of(put["body"]) == "3"


def test_a_task_change_that_was_not_stored_withdraws_its_outbox_record(queued):
    store = ScriptedStore({("GET", "Task/5"): hub_task("requested"), ("PUT", "Basic/*"): {}})
    ctx = request_context(
        "patch", "PATCH", "Task", "5", client=Client("hub-desk", HUB_ODS, "hub"), store=store
    )
    entry = WriteEntry("PUT", "Task/5", hub_task("accepted"))
    plugin = Routing(directory("FS1A1"), own_ods=HUB_ODS)
    plugin.fhirplug_before_storage(ctx=ctx, entry=entry)
    basic_id = outbox.delivery_of(store.calls[-1]["body"]).id
    plugin.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=StorageOutcome(412))
    assert (store.calls[-1]["method"], store.calls[-1]["path"]) == ("DELETE", f"Basic/{basic_id}")
    assert queued == []


def test_a_task_change_for_a_tenant_spoke_is_not_forwarded():
    store = ScriptedStore({("GET", "Task/5"): hub_task("requested")})
    ctx = request_context(
        "patch", "PATCH", "Task", "5", client=Client("hub-desk", HUB_ODS, "hub"), store=store
    )
    Routing(directory(), own_ods=HUB_ODS).fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("PUT", "Task/5", hub_task("accepted"))
    )
    assert [c for c in store.calls if c["method"] == "PUT"] == []


def test_a_change_is_not_sent_back_to_the_party_it_came_from():
    store = ScriptedStore({("GET", "Task/5"): hub_task("requested")})
    spoke = Client("their-worker", "FS1A1", "spoke")
    ctx = request_context("patch", "PATCH", "Task", "5", client=spoke, store=store)
    Routing(directory("FS1A1"), own_ods=HUB_ODS).fhirplug_before_storage(
        ctx=ctx, entry=WriteEntry("PUT", "Task/5", hub_task("cancelled"))
    )
    assert store.calls == []


def test_a_dispense_for_a_partner_spoke_gets_an_outbox_record():
    task = hub_task("in-progress")
    store = ScriptedStore({("GET", "Task"): searchset(task)})
    bundle = message("valid-hub-to-spoke")
    own_hub = Client("hub-desk", HUB_ODS, "hub")
    Routing(directory("FS1A1"), own_ods=HUB_ODS).fhirplug_before_bundle(
        ctx=with_message(own_hub, "hub-to-spoke", store), bundle=bundle
    )
    [added] = outbox_entries(bundle)
    assert outbox.delivery_of(added["resource"]).kind is DeliveryKind.HUB_TO_SPOKE
    assert outbox.subject_of(added["resource"]) == "Task/5"


def test_a_stored_task_change_is_queued(queued):
    store = ScriptedStore({("GET", "Task/5"): hub_task("requested"), ("PUT", "Basic/*"): {}})
    hub = Client("hub-desk", HUB_ODS, "hub")
    ctx = request_context("patch", "PATCH", "Task", "5", client=hub, store=store)
    entry = WriteEntry("PUT", "Task/5", hub_task("accepted"))
    plugin = Routing(directory("FS1A1"), own_ods=HUB_ODS)
    plugin.fhirplug_before_storage(ctx=ctx, entry=entry)
    plugin.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=StorageOutcome(200))
    [delivery] = queued
    assert (delivery.kind, delivery.task_status) == (DeliveryKind.TASK_CHANGE, "accepted")
