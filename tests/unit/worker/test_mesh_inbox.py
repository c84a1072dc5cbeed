"""The inbox loop's order of steps, with a fake MESH and a fake store: a message is acknowledged on
MESH only after it is stored and InfAcked; a store or MESH outage leaves it for the next poll without
holding the messages behind it; an ack MESH refuses for good does not hold it either."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpnotify.acks import parse_ack
from gpnotify.mesh import MeshTransportError, Received
from gpnotify.serialise import from_xml
from tests.support.fake_redis import FakeRedis
from tests.unit.gpnotify.notifications import immunisation
from worker.mesh_inbox import Inbox

PRACTICE = "A83627"


@dataclass
class Answer:
    status_code: int
    body: dict = field(default_factory=dict)
    text: str = ""

    def json(self) -> dict:
        return self.body


class FakeMesh:
    mailbox = "A83627OT001"

    def __init__(self, messages: dict[str, tuple[str, bytes]], send_error: MeshTransportError | None = None):
        self.messages = messages  # mesh id -> (workflow, body)
        self.acknowledged: list[str] = []
        self.sent: list[tuple[str, bytes, str]] = []
        self.send_error = send_error
        self.events: list[str] = []

    def inbox(self) -> list[str]:
        return [m for m in self.messages if m not in self.acknowledged]

    def receive(self, mesh_id: str) -> Received:
        workflow, body = self.messages[mesh_id]
        return Received(mesh_id, "FA565OT001", self.mailbox, workflow, "local-" + mesh_id, None, None, body)

    def acknowledge(self, mesh_id: str) -> None:
        self.events.append("acknowledge")
        self.acknowledged.append(mesh_id)

    def send(
        self, recipient: str, payload: bytes, *, workflow_id: str, local_id: str, subject: Any = None
    ) -> Any:
        if self.send_error is not None:
            raise self.send_error
        self.events.append("send")
        self.sent.append((recipient, payload, workflow_id))


class FakeStore:
    def __init__(self, fail: bool = False):
        self.fail = fail
        self.transactions: list[dict] = []
        self.events: list[str] | None = None

    def get(self, path: str, params: Any = None, timeout: float = 10.0) -> Answer:
        if path == "DocumentReference" and params and "_summary" in params:
            wanted = params["identifier"].split("|", 1)[1]
            stored = any(
                i.get("value") == wanted
                for tx in self.transactions
                for e in tx["entry"]
                for i in e["resource"].get("identifier") or []
            )
            return Answer(200, {"total": int(stored)})
        return Answer(200, {"entry": []})

    def post(self, path: str, json: Any, timeout: float = 10.0) -> Answer:
        if self.fail:
            return Answer(503, text="store down")
        if self.events is not None:
            self.events.append("store")
        self.transactions.append(json)
        return Answer(200)

    def write(self, *args: Any, **kwargs: Any) -> Answer:
        return Answer(200)


def inbox(mesh: FakeMesh, store: FakeStore) -> Inbox:
    store.events = mesh.events
    return Inbox(mesh, store, PRACTICE, "gp", FakeRedis())  # type: ignore[arg-type]


def test_stored_then_infacked_then_acknowledged():
    mesh, store = FakeMesh({"m1": ("DIGMED_FLU_VAC", immunisation("u1").xml())}), FakeStore()
    [taken] = inbox(mesh, store).poll()
    assert taken.outcome == "stored"
    assert mesh.events == ["store", "send", "acknowledge"]
    recipient, payload, workflow = mesh.sent[0]
    assert (recipient, workflow) == ("FA565OT001", "DIGMED_FLU_VAC_ACK")
    assert parse_ack(from_xml(payload)).ok


def test_a_store_outage_leaves_the_message_and_takes_the_next():
    mesh = FakeMesh({"m1": ("DIGMED_FLU_VAC", immunisation("u2").xml()), "m2": ("DIGMED_FLU_VAC", b"<junk")})
    store = FakeStore(fail=True)
    taken = inbox(mesh, store).poll()
    assert [t.outcome for t in taken] == ["left", "left"]
    assert mesh.acknowledged == [] and mesh.sent == []


def test_a_mesh_outage_on_the_infack_leaves_the_message_for_the_next_poll():
    mesh = FakeMesh(
        {"m1": ("DIGMED_FLU_VAC", immunisation("u3").xml())},
        send_error=MeshTransportError("MESH down", retryable=True),
    )
    store = FakeStore()
    [taken] = inbox(mesh, store).poll()
    assert taken.outcome == "left" and mesh.acknowledged == []
    mesh.send_error = None
    [again] = inbox(mesh, store).poll()
    assert again.outcome == "duplicate"  # stored the first time: nothing stored twice
    assert len(store.transactions) == 1 and mesh.acknowledged == ["m1"]


def test_an_ack_mesh_refuses_for_good_does_not_hold_the_message():
    mesh = FakeMesh(
        {"m1": ("DIGMED_FLU_VAC", immunisation("u4").xml())},
        send_error=MeshTransportError("Unregistered to address", retryable=False),
    )
    [taken] = inbox(mesh, FakeStore()).poll()
    assert taken.outcome == "stored" and mesh.acknowledged == ["m1"]


def test_a_malformed_message_is_quarantined_nacked_and_acknowledged():
    mesh, store = FakeMesh({"m1": ("DIGMED_FLU_VAC", b"<junk")}), FakeStore()
    [taken] = inbox(mesh, store).poll()
    assert taken.outcome == "quarantined"
    [tx] = store.transactions
    assert tx["entry"][1]["resource"]["status"] == "entered-in-error"
    nack = parse_ack(from_xml(mesh.sent[0][1]))
    assert (nack.ok, nack.code, nack.acked_message_id) == (False, "10009", "local-m1")
    assert mesh.acknowledged == ["m1"]


def test_a_workflow_the_practice_does_not_take_is_quarantined_without_an_ack():
    mesh, store = FakeMesh({"m1": ("SOMETHING_ELSE", b"<x/>")}), FakeStore()
    [taken] = inbox(mesh, store).poll()
    assert taken.outcome == "quarantined" and mesh.sent == [] and mesh.acknowledged == ["m1"]


def test_a_store_that_does_not_answer_leaves_the_message_too():
    import requests

    class Unreachable(FakeStore):
        def get(self, *args, **kwargs):
            raise requests.ConnectionError("store down")

    mesh = FakeMesh({"m1": ("DIGMED_FLU_VAC", immunisation("u5").xml())})
    [taken] = inbox(mesh, Unreachable()).poll()
    assert taken.outcome == "left" and mesh.acknowledged == []
