"""The GP practice's MESH inbox and the ITK3 acks, on the real store (through the proxy), Redis and a
mesh-sandbox: notifications built by the pharmacy FA565 arrive at the practice A83627, are stored
once and searchable by NHS Number and type, InfAcked once, BusAcked once when filed; a malformed
message is quarantined with a negative InfAck without blocking the message behind it; and the
pharmacy's inbox records each ack on its tracking Communication.

The inbox loop runs in the test process (``worker.mesh_inbox.poll_once``, what the worker's
``mesh-inbox`` thread calls every ``FHIRPLUG_MESH_POLL_SECONDS``), so each step is deterministic."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import pytest
from mesh_client import MeshClient
from redis import Redis
from rq import Queue

from forwarding.delivery import QUEUE
from gpnotify.ack_intake import ACK_EXTENSION, NOTIFICATION_SYSTEM
from gpnotify.acks import AckKind, parse_ack
from gpnotify.gp_records import ENTRY_SYSTEM, MESH_MESSAGE_SYSTEM
from gpnotify.mesh import MeshTransport
from gpnotify.serialise import from_xml
from hubspoke.identifiers import TENANT_SYSTEM
from proxy.direct_store import DirectStore
from tests.unit.gpnotify.notifications import emergency_supply, immunisation, minor_illness
from worker.mesh_inbox import BUSACK_TAG, poll_once

pytestmark = pytest.mark.integration

PHARMACY, PHARMACY_ODS = "FA565OT001", "FA565"
PRACTICE, PRACTICE_ODS = "A83627OT001", "A83627"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATCH = {"Content-Type": "application/json-patch+json"}
FILE_DOCS = "system/DocumentReference.rus"


@pytest.fixture(scope="module")
def redis(stack):
    r = Redis.from_url(stack.redis_url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def store(stack, redis):
    with DirectStore(stack.store_url, redis) as s:
        yield s


@pytest.fixture(scope="module")
def gp(mesh, store, redis):
    settings = dataclasses.replace(mesh.settings(PRACTICE), role="gp")
    return lambda: poll_once(settings, store, PRACTICE_ODS, redis)


@pytest.fixture(scope="module")
def pharmacy(mesh, store, redis):
    settings = dataclasses.replace(mesh.settings(PHARMACY), role="pharmacy")
    return lambda: poll_once(settings, store, PHARMACY_ODS, redis)


def send(mesh, message) -> str:
    with MeshTransport(mesh.settings(PHARMACY)) as m:
        return (
            m.send(
                PRACTICE, message.xml(), workflow_id=message.workflow_id, local_id=message.message_id
            ).message_id
            or ""
        )


def acks_waiting(mesh, acked: str) -> list:
    """The acks of ``acked`` waiting in the pharmacy's inbox (read, left there)."""
    with MeshTransport(mesh.settings(PHARMACY)) as m:
        found = [m.receive(i) for i in m.inbox()]
    acks = [parse_ack(from_xml(r.body)) for r in found if r.workflow_id.endswith("_ACK")]
    return [a for a in acks if a.acked_message_id == acked]


def drain_pharmacy(mesh) -> None:
    with MeshTransport(mesh.settings(PHARMACY)) as m:
        for i in m.inbox():
            m.acknowledge(i)


def documents(http, stack, **params) -> list[dict]:
    r = http.get(f"{stack.fhir}/DocumentReference", params=params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry") or []]


def by_message(http, stack, message_id: str) -> list[dict]:
    return documents(http, stack, identifier=f"{NOTIFICATION_SYSTEM}|{message_id}")


def test_an_immunisation_is_stored_searchable_acknowledged_and_infacked_once(mesh, gp, http, stack):
    message = immunisation(f"in-{uuid.uuid4()}")
    mesh_id = send(mesh, message)
    taken = {t.mesh_id: t for t in gp()}
    assert taken[mesh_id].outcome == "stored"

    found = documents(
        http,
        stack,
        **{
            "patient-identifier": f"{NHS}|9912003888",
            "type": "http://snomed.info/sct|41000179103",
            "identifier": f"{NOTIFICATION_SYSTEM}|{message.message_id}",
        },
    )
    [doc] = found
    assert (doc["status"], doc["docStatus"]) == ("current", "preliminary")
    assert doc["author"][0]["identifier"]["value"] == PHARMACY_ODS
    assert {"system": MESH_MESSAGE_SYSTEM, "value": mesh_id} in doc["identifier"]
    binary = http.get(
        f"{stack.fhir}/{doc['content'][0]['attachment']['url']}", headers={"Accept": "application/fhir+json"}
    )
    assert binary.status_code == 200
    imm = http.get(f"{stack.fhir}/Immunization", params={"identifier": f"{ENTRY_SYSTEM}|"}).json()
    assert any(
        i["value"].startswith(message.message_id)
        for e in imm.get("entry") or []
        for i in e["resource"]["identifier"]
    )

    with MeshTransport(mesh.settings(PRACTICE)) as m:
        assert mesh_id not in m.inbox()  # acknowledged on MESH
    [ack] = acks_waiting(mesh, message.message_id)
    assert (ack.kind, ack.ok, ack.code) == (AckKind.INF, True, "20013")


def test_the_practice_sees_and_files_what_it_received_and_another_tenant_cannot(mesh, gp, stack):
    message = immunisation(f"tenant-{uuid.uuid4()}")
    send(mesh, message)
    gp()
    mine = stack.session(client=stack.client("gp-a83627", "spoke", PRACTICE_ODS, scopes=FILE_DOCS))
    other = stack.session(client=stack.client("pharmacy-vne51", "spoke", "VNE51", scopes=FILE_DOCS))
    [doc] = by_message(mine, stack, message.message_id)
    assert by_message(other, stack, message.message_id) == []
    filed = mine.patch(
        f"{stack.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/docStatus", "value": "final"}],
        headers=PATCH,
    )
    assert filed.status_code == 200, filed.text  # the practice's own user files it
    refused = other.patch(
        f"{stack.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/docStatus", "value": "final"}],
        headers=PATCH,
    )
    assert refused.status_code in (403, 404)


def test_a_redelivered_message_stores_and_infacks_nothing_new(mesh, gp, http, stack, store, redis):
    from worker.mesh_inbox import Inbox

    message = immunisation(f"again-{uuid.uuid4()}")
    mesh_id = send(mesh, message)
    # a worker that stored and InfAcked, then died before acknowledging on MESH
    with MeshTransport(dataclasses.replace(mesh.settings(PRACTICE), role="gp")) as m:
        inbox = Inbox(m, store, PRACTICE_ODS, "gp", redis)
        assert inbox._notification(m.receive(mesh_id)).outcome == "stored"
    taken = {t.mesh_id: t for t in gp()}  # MESH delivers it again
    assert mesh_id in taken, taken
    assert taken[mesh_id].outcome == "duplicate"
    assert len(by_message(http, stack, message.message_id)) == 1
    imm = http.get(
        f"{stack.fhir}/Immunization", params={"identifier": f"{ENTRY_SYSTEM}|", "_count": "200"}
    ).json()
    assert (
        sum(
            1
            for e in imm.get("entry") or []
            for i in e["resource"]["identifier"]
            if i["value"].startswith(message.message_id)
        )
        == 1
    )
    assert len(acks_waiting(mesh, message.message_id)) == 1


def test_filing_the_document_sends_one_busack(mesh, gp, http, stack):
    message = immunisation(f"file-{uuid.uuid4()}")
    send(mesh, message)
    gp()
    [doc] = by_message(http, stack, message.message_id)
    r = http.patch(
        f"{stack.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/docStatus", "value": "final"}],
        headers=PATCH,
    )
    assert r.status_code == 200, r.text
    gp()
    gp()  # a second poll sends nothing more
    bus = [a for a in acks_waiting(mesh, message.message_id) if a.kind is AckKind.BUS]
    assert [(a.ok, a.code) for a in bus] == [(True, "30001")]
    [doc] = by_message(http, stack, message.message_id)
    assert BUSACK_TAG["code"] in {t.get("code") for t in doc["meta"].get("tag") or []}


def test_a_document_the_practice_cannot_file_gets_a_negative_busack(mesh, gp, http, stack):
    message = immunisation(f"refuse-{uuid.uuid4()}")
    send(mesh, message)
    gp()
    [doc] = by_message(http, stack, message.message_id)
    r = http.patch(
        f"{stack.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/status", "value": "entered-in-error"}],
        headers=PATCH,
    )
    assert r.status_code == 200, r.text
    gp()
    bus = [a for a in acks_waiting(mesh, message.message_id) if a.kind is AckKind.BUS]
    assert [(a.ok, a.code) for a in bus] == [(False, "30002")]


def test_a_malformed_message_is_quarantined_nacked_and_does_not_block_the_next(mesh, gp, http, stack):
    local_id = f"junk-{uuid.uuid4()}"
    with MeshClient(mesh.url, PHARMACY, "password", shared_key=b"TestKey", max_retries=0) as raw:
        junk_id = raw.send_message(PRACTICE, b"<not-fhir>", workflow_id="DIGMED_FLU_VAC", local_id=local_id)
    good = immunisation(f"behind-{uuid.uuid4()}")
    good_id = send(mesh, good)
    taken = {t.mesh_id: t for t in gp()}
    assert taken[junk_id].outcome == "quarantined"
    assert taken[good_id].outcome == "stored"
    [quarantined] = documents(http, stack, identifier=f"{MESH_MESSAGE_SYSTEM}|{junk_id}")
    assert quarantined["status"] == "entered-in-error"
    [nack] = acks_waiting(mesh, local_id)
    assert (nack.kind, nack.ok, nack.code) == (AckKind.INF, False, "10009")
    with MeshTransport(mesh.settings(PRACTICE)) as m:
        assert junk_id not in m.inbox()


@pytest.mark.parametrize(
    ("build", "doc_type"), [(emergency_supply, "1218611000000102"), (minor_illness, "1577041000000109")]
)
def test_the_other_kinds_arrive_and_are_stored(mesh, gp, http, stack, build, doc_type):
    message = build(f"k-{uuid.uuid4()}", practice=PRACTICE_ODS)
    mesh_id = send(mesh, message)
    taken = {t.mesh_id: t for t in gp()}
    assert taken[mesh_id].outcome == "stored"
    [doc] = by_message(http, stack, message.message_id)
    assert doc["type"]["coding"][0]["code"] == doc_type
    assert len(acks_waiting(mesh, message.message_id)) == 1


def test_the_pharmacy_records_infack_and_busack_on_its_communication(mesh, gp, pharmacy, http, stack, store):
    drain_pharmacy(mesh)
    message = immunisation(f"track-{uuid.uuid4()}")
    comm = {
        "resourceType": "Communication",
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": PHARMACY_ODS}]},
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": message.message_id}],
        "status": "in-progress",
    }
    created = store.post("Communication", comm)
    assert created.status_code == 201, created.text
    send(mesh, message)
    gp()
    assert [t.outcome for t in pharmacy()] == ["ack-recorded"]
    [doc] = by_message(http, stack, message.message_id)
    http.patch(
        f"{stack.fhir}/DocumentReference/{doc['id']}",
        json=[{"op": "replace", "path": "/docStatus", "value": "final"}],
        headers=PATCH,
    )
    gp()
    assert [t.outcome for t in pharmacy()] == ["ack-recorded"]
    [found] = [
        e["resource"]
        for e in http.get(
            f"{stack.fhir}/Communication",
            params={"identifier": f"{NOTIFICATION_SYSTEM}|{message.message_id}"},
        ).json()["entry"]
    ]
    assert found["status"] == "completed"
    kinds = [
        next(x["valueCode"] for x in e["extension"] if x["url"] == "kind")
        for e in found["extension"]
        if e["url"] == ACK_EXTENSION
    ]
    assert kinds == ["InfAck", "BusAck"]


def test_a_negative_ack_stops_the_communication_and_is_a_dead_letter(
    mesh, gp, pharmacy, http, stack, store, redis
):
    drain_pharmacy(mesh)
    local_id = str(uuid.uuid4())  # what the pharmacy tracks the (broken) notification by
    created = store.post(
        "Communication",
        {
            "resourceType": "Communication",
            "meta": {"security": [{"system": TENANT_SYSTEM, "code": PHARMACY_ODS}]},
            "identifier": [{"system": NOTIFICATION_SYSTEM, "value": local_id}],
            "status": "in-progress",
        },
    )
    assert created.status_code == 201
    with MeshClient(mesh.url, PHARMACY, "password", shared_key=b"TestKey", max_retries=0) as raw:
        raw.send_message(PRACTICE, b"<broken", workflow_id="DIGMED_FLU_VAC", local_id=local_id)
    gp()
    assert [t.outcome for t in pharmacy()] == ["dead-letter"]
    comm = store.get(f"Communication/{created.json()['id']}").json()
    assert comm["status"] == "stopped"
    assert comm["statusReason"]["coding"][0]["code"] == "10009"
    listed = subprocess.run(
        [sys.executable, "-m", "ops.queue_cli", "dead", "--full"],
        env={**os.environ, "REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "GP notification InfAck" in listed and "negative InfAck 10009" in listed
    dead = Queue(QUEUE, connection=redis).failed_job_registry
    reasons = [
        Queue(QUEUE, connection=redis).fetch_job(j).meta.get("dead_letter_reason") for j in dead.get_job_ids()
    ]
    assert any("10009" in (r or "") for r in reasons)
