"""The tracking Communication: its shape, and statuses that only move forward."""

from __future__ import annotations

from gpnotify import Sender, build_immunisation, tracking
from tests.unit.gpnotify.examples import r4_inputs


def record() -> dict:
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    message = build_immunisation(focus, related, Sender("FA565", "FA565OT001"))
    return tracking.communication(
        message,
        about=["Immunization/imm-jack-1"],
        patient="Patient/pat-jack",
        encounter=None,
        pharmacy_ods="FA565",
    )


def test_a_queued_notification_is_found_by_its_message_id_and_names_the_practice():
    c = record()
    message_id = tracking.message_id_of(c)
    assert c["identifier"] == [{"system": tracking.NOTIFICATION_SYSTEM, "value": message_id}]
    assert c["id"] == tracking.communication_id(message_id)
    assert c["status"] == tracking.QUEUED == "preparation"
    assert c["recipient"] == [
        {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A83627"}}
    ]
    assert c["about"] == [{"reference": "Immunization/imm-jack-1"}]
    assert c["topic"]["coding"][0]["code"] == "ITK009D"
    assert c["meta"]["security"] == [
        {"system": "https://fhirplug.org/fhir/CodeSystem/tenant", "code": "FA565"}
    ]


def test_accepted_by_mesh_it_is_in_progress_with_mesh_s_message_id():
    c = tracking.sent(record(), mesh_message_id="MESH-1", mailbox="A83627OT001")
    assert c is not None and c["status"] == "in-progress" and c["sent"]
    assert {"system": tracking.MESH_MESSAGE_SYSTEM, "value": "MESH-1"} in c["identifier"]
    assert tracking.sent(c, mesh_message_id="MESH-1", mailbox="A83627OT001") is None  # nothing more to say


def test_an_acknowledged_record_is_not_taken_back_by_a_late_acceptance():
    c = {**record(), "status": tracking.ACKNOWLEDGED}
    later = tracking.sent(c, mesh_message_id="MESH-1", mailbox="A83627OT001")
    assert later is not None and later["status"] == "completed"
    assert {"system": tracking.MESH_MESSAGE_SYSTEM, "value": "MESH-1"} in later["identifier"]


def test_a_failure_stops_it_with_the_reason():
    c = tracking.failed(record(), "MESH send: Unregistered recipient")
    assert c is not None and c["status"] == "stopped"
    assert c["statusReason"]["text"] == "MESH send: Unregistered recipient"
    assert tracking.failed(c, "again") is None


def test_a_negative_ack_stops_it_with_its_code():
    accepted = tracking.sent(record(), mesh_message_id="MESH-1", mailbox="A83627OT001")
    assert accepted is not None and accepted["status"] == "in-progress"
    refused = tracking.failed(accepted, "patient not registered here", code="20009")
    assert refused is not None and refused["statusReason"]["coding"][0]["code"] == "20009"
