"""Taking an ack in at the pharmacy: each ack recorded once on the tracking Communication; a
positive BusAck completes it, a negative ack stops it and is a dead letter."""

from __future__ import annotations

from gpnotify.ack_intake import ACK_EXTENSION, NOTIFICATION_SYSTEM, acks_recorded, apply_ack, search_params
from gpnotify.acks import Ack, AckKind

SENT = "6f0c3bde-0ab4-5b3e-9d4c-8a8a0d6d2f10"


def communication(status="in-progress"):
    return {
        "resourceType": "Communication",
        "id": "c1",
        "status": status,
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": SENT}],
    }


def ack(kind=AckKind.INF, ok=True, code="20013", reason=None, message_id="ack-1"):
    return Ack(SENT, kind, ok, code, reason, "ok" if ok else "fatal-error", message_id, "A83627")


def test_the_search_finds_the_communication_by_the_acked_message_id():
    assert search_params(ack()) == {"identifier": f"{NOTIFICATION_SYSTEM}|{SENT}"}


def test_a_positive_infack_is_recorded_and_leaves_the_status():
    result = apply_ack(communication(), ack())
    assert result.communication["status"] == "in-progress"
    assert not result.dead_letter
    [recorded] = acks_recorded(result.communication)
    assert (recorded["kind"], recorded["ok"], recorded["code"]) == ("InfAck", True, "20013")
    assert recorded["ackMessageId"] == "ack-1" and recorded["received"]


def test_a_positive_busack_completes_the_notification():
    first = apply_ack(communication(), ack()).communication
    result = apply_ack(first, ack(AckKind.BUS, code="30001", message_id="ack-2"))
    assert result.communication["status"] == "completed"
    assert [a["kind"] for a in acks_recorded(result.communication)] == ["InfAck", "BusAck"]


def test_a_negative_ack_stops_the_notification_and_is_a_dead_letter():
    result = apply_ack(communication(), ack(ok=False, code="20009", reason="Payload validation failure"))
    assert result.dead_letter
    assert result.communication["status"] == "stopped"
    assert result.communication["statusReason"]["coding"][0]["code"] == "20009"
    assert "Payload validation failure" in result.communication["statusReason"]["text"]


def test_a_positive_busack_does_not_undo_a_stop():
    stopped = apply_ack(communication(), ack(ok=False, code="20009", reason="bad")).communication
    result = apply_ack(stopped, ack(AckKind.BUS, code="30001", message_id="ack-2"))
    assert result.communication["status"] == "stopped"


def test_the_same_ack_twice_changes_nothing():
    once = apply_ack(communication(), ack()).communication
    again = apply_ack(once, ack())
    assert again.communication is None and not again.dead_letter


def test_the_input_is_not_changed():
    original = communication()
    apply_ack(original, ack())
    assert not any(e.get("url") == ACK_EXTENSION for e in original.get("extension", []))
