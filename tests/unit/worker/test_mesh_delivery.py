"""The MESH job with a stand-in transport: accepted, retried through an outage, dead-lettered
with MESH's reason, and a practice MESH knows no mailbox for."""

from __future__ import annotations

import pytest

from forwarding.policy import PermanentFailure, RetryableFailure
from gpnotify import Sender, build_immunisation, mailboxes
from gpnotify.gather import Notification
from gpnotify.mesh import MeshTransportError, Sent
from gpnotify.sending import delivery_for
from proxy.config import MeshSettings, WorkerSettings
from tests.support.fake_redis import FakeRedis
from tests.unit.gpnotify.examples import r4_inputs
from worker import mesh_delivery

MESH = MeshSettings(mailbox="FA565OT001", password="password", shared_key="TestKey")


class FakeMesh:
    sends: list = []
    lookup: str | None = "A83627OT001"
    fail: MeshTransportError | None = None

    def __init__(self, settings):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def lookup_mailbox(self, ods, workflow):
        return type(self).lookup

    def send(self, recipient, payload, *, workflow_id, local_id, subject=None):
        if type(self).fail is not None:
            raise type(self).fail
        type(self).sends.append((recipient, workflow_id, local_id, subject))
        return Sent("MESH-1", local_id, already_sent=False, status="accepted")


@pytest.fixture
def mesh(monkeypatch):
    class Mesh(FakeMesh):
        sends: list = []

    monkeypatch.setattr(mesh_delivery, "MeshTransport", Mesh)
    monkeypatch.setattr(mesh_delivery, "_process", mesh_delivery._Process())
    mesh_delivery.configure(WorkerSettings(mesh=MESH), redis=FakeRedis())
    return Mesh


def job() -> dict:
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    message = build_immunisation(focus, related, Sender("FA565", "FA565OT001"))
    return delivery_for(Notification(message, ["Immunization/imm-jack-1"], None, None), "FA565").to_dict()


def test_a_notification_goes_to_the_practice_mailbox_with_its_message_id_as_local_id(mesh):
    d = job()
    answer = mesh_delivery.deliver(d)
    assert answer["mesh_message_id"] == "MESH-1"
    assert mesh.sends == [("A83627OT001", "DIGMED_FLU_VAC", d["body"]["message_id"], "ITK009D")]


def test_mesh_down_is_retried(mesh):
    mesh.fail = MeshTransportError("MESH send: not answering", retryable=True)
    with pytest.raises(RetryableFailure):
        mesh_delivery.deliver(job())


def test_a_refusal_for_good_is_a_dead_letter_with_mesh_s_reason(mesh):
    mesh.fail = MeshTransportError("MESH send to X: Unregistered recipient", retryable=False)
    with pytest.raises(PermanentFailure, match="Unregistered recipient"):
        mesh_delivery.deliver(job())


def test_a_practice_without_a_mailbox_is_a_dead_letter(mesh):
    mesh.lookup = None
    with pytest.raises(PermanentFailure, match="no mailbox for GP practice A83627"):
        mesh_delivery.deliver(job())
    assert mesh.sends == []


def test_the_lookup_is_cached_between_jobs(mesh):
    redis = mesh_delivery._process.redis
    mesh_delivery.deliver(job())
    assert redis.get(mailboxes.key("A83627", "DIGMED_FLU_VAC")) == b"A83627OT001"
