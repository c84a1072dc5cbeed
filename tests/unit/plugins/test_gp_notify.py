"""The gp_notify plugin with an in-memory store, fake Redis and a stand-in for MESH's lookup:
the trigger on store records and queues once, ``$notify-gp`` answers and refuses."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from gpnotify import sending, tracking
from hubspoke.identifiers import TENANT_SYSTEM
from plugins.gp_notify import GpNotify
from proxy.config import MeshSettings
from proxy.context import Client, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from tests.support.fake_redis import FakeRedis
from tests.support.memory_store import MemoryStore
from tests.support.plugin_context import request_context
from tests.unit.gpnotify.examples import r4_inputs

MESH = MeshSettings(mailbox="FA565OT001", password="password", shared_key="TestKey")
PHARMACY = Client("pharmacy", "FA565", "dispenser")


def labelled(resources: list[dict], ods: str = "FA565") -> list[dict]:
    return [{**r, "meta": {**r.get("meta", {}), "security": [{"system": TENANT_SYSTEM, "code": ods}]}}
            for r in resources]  # fmt: skip


@pytest.fixture
def queued(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(sending, "queue_once", lambda d, redis: calls.append(d) or "queued")
    return calls


def plugin(mailbox: str | None = "A83627OT001", trigger: bool = True, mesh: MeshSettings = MESH) -> GpNotify:
    return GpNotify(redis=FakeRedis(), mesh=mesh, trigger=trigger, lookup=lambda ods, wf: mailbox)


def operation(store: MemoryStore, rtype: str, rid: str, client: Client = PHARMACY):
    ctx = request_context("operation", "POST", rtype, rid, client=client, store=store)
    ctx.interaction = dataclasses.replace(ctx.interaction, operation="$notify-gp")
    return ctx


def test_storing_a_completed_immunisation_records_the_intent_and_queues_it(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    ctx = request_context("update", "PUT", "Immunization", "imm-jack-1", client=PHARMACY, store=store)
    entry = WriteEntry("PUT", "Immunization/imm-jack-1", store.resources["Immunization/imm-jack-1"])
    plugin().fhirplug_after_storage(
        ctx, entry, StorageOutcome(200, location="Immunization/imm-jack-1/_history/1")
    )
    [delivery] = queued
    [transaction] = store.transactions
    kinds = [e["resource"]["resourceType"] for e in transaction["entry"]]
    assert kinds == ["Communication", "Basic"]  # both written together, before the job
    comm = transaction["entry"][0]["resource"]
    assert comm["status"] == "preparation" and tracking.message_id_of(comm) == delivery.body["message_id"]
    assert (delivery.partner, delivery.path, str(delivery.kind)) == (
        "A83627",
        "DIGMED_FLU_VAC",
        "GP notification",
    )


def test_no_trigger_when_switched_off_without_a_mailbox_or_for_an_administrator(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    entry = WriteEntry("PUT", "Immunization/imm-jack-1", store.resources["Immunization/imm-jack-1"])
    outcome = StorageOutcome(200, location="Immunization/imm-jack-1/_history/1")
    admin = Client("admin", None, "admin")
    for p, client in [
        (plugin(trigger=False), PHARMACY),
        (plugin(mesh=MeshSettings()), PHARMACY),
        (plugin(), admin),
    ]:
        ctx = request_context("update", "PUT", "Immunization", "imm-jack-1", client=client, store=store)
        p.fhirplug_after_storage(ctx, entry, outcome)
    assert queued == [] and store.transactions == []


def test_a_trigger_that_cannot_build_never_fails_the_write(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    ctx = request_context("update", "PUT", "Immunization", "imm-jack-1", client=PHARMACY, store=store)
    entry = WriteEntry("PUT", "Immunization/imm-jack-1", store.resources["Immunization/imm-jack-1"])
    plugin(mailbox=None).fhirplug_after_storage(
        ctx, entry, StorageOutcome(200, location="Immunization/imm-jack-1")
    )
    assert queued == [] and store.transactions == []


def test_notify_gp_answers_the_tracking_record_and_the_message(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    response = plugin().fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
    params = {p["name"]: p for p in response.resource["parameter"]}
    assert response.status == 200 and params["outcome"]["valueCode"] == "queued"
    assert params["communication"]["resource"]["status"] == "preparation"
    assert params["practice"]["valueIdentifier"]["value"] == "A83627"
    assert b"ITK009D" in base64.b64decode(params["message"]["valueAttachment"]["data"])
    assert len(queued) == 1


def test_notify_gp_for_an_unknown_practice_mailbox_is_422_and_nothing_is_queued(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    with pytest.raises(FhirError) as caught:
        plugin(mailbox=None).fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
    assert caught.value.status == 422 and caught.value.expression == ["Patient.generalPractitioner"]
    assert "A83627" in str(caught.value) and "DIGMED_FLU_VAC" in str(caught.value)
    assert queued == [] and store.transactions == []


def test_notify_gp_for_a_patient_without_a_practice_is_422_at_general_practitioner(queued):
    resources = [{**r, "generalPractitioner": []} if r["resourceType"] == "Patient" else r
                 for r in r4_inputs("immunisation-JackDawkins.r4.json")]  # fmt: skip
    store = MemoryStore(labelled(resources))
    with pytest.raises(FhirError) as caught:
        plugin().fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
    assert caught.value.status == 422 and caught.value.expression == ["Patient.generalPractitioner"]
    assert queued == [] and store.transactions == []


def test_another_pharmacy_cannot_notify_for_a_resource_it_does_not_own(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    other = Client("other", "FX999", "dispenser")
    with pytest.raises(FhirError) as caught:
        plugin().fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1", client=other))
    assert caught.value.status == 404
    assert queued == [] and store.transactions == []


def test_an_explicit_resend_of_a_sent_notification_sends_nothing_new(queued):
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    p = plugin()
    p.fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
    comm_key = next(k for k in store.resources if k.startswith("Communication/"))
    store.put({**store.resources[comm_key], "status": "in-progress"})
    response = p.fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
    params = {x["name"]: x for x in response.resource["parameter"]}
    assert params["outcome"]["valueCode"] == "already-sent"
    assert len(queued) == 1 and len(store.transactions) == 1


def test_notify_gp_is_not_served_without_a_mailbox():
    store = MemoryStore(labelled(r4_inputs("immunisation-JackDawkins.r4.json")))
    assert (
        plugin(mesh=MeshSettings()).fhirplug_request(ctx=operation(store, "Immunization", "imm-jack-1"))
        is None
    )


def test_a_consultation_in_a_transaction_is_judged_once_its_references_are_resolved(queued):
    store = MemoryStore(labelled(r4_inputs("minor-illness-referral-JackSmith.r4.json")))
    sent = {**store.resources["Encounter/enc-jacksmith"], "basedOn": [{"reference": "urn:uuid:1"}]}
    ctx = request_context("transaction", "POST", client=PHARMACY, store=store)
    entry = WriteEntry("POST", "Encounter", sent, index=0)
    plugin(mailbox="C81007OT001").fhirplug_after_storage(
        ctx, entry, StorageOutcome(201, location="Encounter/enc-jacksmith/_history/1")
    )
    [delivery] = queued
    assert delivery.path == "DIGMED_MINOR_ILLNESS_PEM"
