"""The pharmacy taking an ack in: recorded on its Communication with If-Match (a concurrent change
re-read and applied again), a negative or unmatched ack raised to the dead letters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gpnotify.acks import PATIENT_KNOWN, SUCCESS, UNREADABLE, AckKind, build_ack
from gpnotify.itk import Sender
from gpnotify.mesh import Received
from gpnotify.tracking import NOTIFICATION_SYSTEM
from worker import mesh_acks

SENT = "6f0c3bde-0ab4-5b3e-9d4c-8a8a0d6d2f10"


@dataclass
class Answer:
    status_code: int
    body: dict = field(default_factory=dict)
    text: str = ""

    def json(self) -> dict:
        return self.body


class FakeStore:
    def __init__(self, comms: list[dict], conflicts: int = 0):
        self.comms, self.conflicts, self.puts = comms, conflicts, []

    def get(self, path: str, params: Any = None, timeout: float = 10.0) -> Answer:
        return Answer(200, {"entry": [{"resource": c} for c in self.comms]})

    def write(self, method: str, path: str, json: Any = None, timeout: float = 10.0, headers=None) -> Answer:
        self.puts.append((path, json, headers))
        if self.conflicts:
            self.conflicts -= 1
            return Answer(412)
        return Answer(200)


def received(kind=AckKind.INF, code=SUCCESS, reason=None) -> Received:
    ack = build_ack(
        kind, SENT, code, sender=Sender("A83627", "A83627OT001"), receiver_ods="FA565",
        workflow_id="DIGMED_FLU_VAC", reason=reason,
    )  # fmt: skip
    return Received(
        "m1", "A83627OT001", "FA565OT001", "DIGMED_FLU_VAC_ACK", ack.message_id, None, None, ack.xml()
    )


def communication() -> dict:
    return {
        "resourceType": "Communication",
        "id": "c1",
        "meta": {"versionId": "3"},
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": SENT}],
        "status": "in-progress",
    }


@pytest.fixture
def letters(monkeypatch):
    out: list[tuple] = []
    monkeypatch.setattr(mesh_acks, "dead_letter", lambda redis, *args: out.append(args))
    return out


def test_a_busack_is_recorded_with_if_match(letters):
    store = FakeStore([communication()])
    taken = mesh_acks.take_ack(store, None, received(AckKind.BUS, PATIENT_KNOWN))  # type: ignore[arg-type]
    assert taken.outcome == "ack-recorded"
    [(path, body, headers)] = store.puts
    assert (path, headers, body["status"]) == ("Communication/c1", {"If-Match": 'W/"3"'}, "completed")
    assert letters == []


def test_a_concurrent_change_is_read_again_and_the_ack_applied_again(letters):
    store = FakeStore([communication()], conflicts=1)
    assert mesh_acks.take_ack(store, None, received()).outcome == "ack-recorded"  # type: ignore[arg-type]
    assert len(store.puts) == 2


def test_a_negative_ack_is_recorded_and_raised_to_the_dead_letters(letters):
    store = FakeStore([communication()])
    taken = mesh_acks.take_ack(store, None, received(code=UNREADABLE, reason="bad XML"))  # type: ignore[arg-type]
    assert taken.outcome == "dead-letter"
    assert store.puts[0][1]["status"] == "stopped"
    [(job_id, partner, what, reason)] = letters
    assert (partner, what) == ("A83627", "GP notification InfAck") and "10009" in reason


def test_an_ack_of_nothing_we_sent_is_a_dead_letter(letters):
    store = FakeStore([])
    assert mesh_acks.take_ack(store, None, received()).outcome == "dead-letter"  # type: ignore[arg-type]
    assert store.puts == [] and "0 notifications match" in letters[0][3]
