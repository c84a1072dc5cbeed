"""Reading a received notification: what a practice takes in from each kind, and the ITK3 code each
broken rule earns, with whatever could still be read for the negative InfAck."""

from __future__ import annotations

import copy

import pytest

from gpnotify.inbound import Rejected, read_notification
from gpnotify.serialise import to_xml
from tests.unit.gpnotify.notifications import emergency_supply, immunisation, minor_illness

PRACTICE = "A83627"


def rejected(bundle_or_bytes, own=PRACTICE) -> Rejected:
    body = bundle_or_bytes if isinstance(bundle_or_bytes, bytes) else to_xml(bundle_or_bytes)
    with pytest.raises(Rejected) as info:
        read_notification(body, own)
    return info.value


def test_an_immunisation_is_read_with_what_the_practice_stores():
    message = immunisation()
    note = read_notification(message.xml(), PRACTICE)
    assert note.kind.event == "ITK009D"
    assert note.message_id == message.message_id
    assert (note.sender_ods, note.sender_mailbox, note.receiver_ods) == ("FA565", "FA565OT001", PRACTICE)
    assert note.nhs_number == "9912003888"
    assert note.document_type["code"] == "41000179103"
    assert note.inf_ack_requested and note.bus_ack_requested
    assert len(note.resources("Immunization")) == 1


@pytest.mark.parametrize(
    ("build", "event", "doc_type"),
    [(emergency_supply, "ITK010D", "1218611000000102"), (minor_illness, "ITK013D", "1577041000000109")],
)
def test_the_other_kinds_are_read(build, event, doc_type):
    note = read_notification(build(practice=PRACTICE).xml(), PRACTICE)
    assert (note.kind.event, note.document_type["code"]) == (event, doc_type)


def test_what_is_not_fhir_xml_is_unreadable_and_names_no_message():
    problem = rejected(b"<not-fhir/>")
    assert problem.response.code == "10009"
    assert problem.message_id is None


def test_a_message_for_another_practice_is_refused_naming_message_and_sender():
    message = immunisation()
    problem = rejected(message.xml(), own="C81007")
    assert problem.response.code == "20002"
    assert (problem.message_id, problem.sender_ods) == (message.message_id, "FA565")


def test_an_unknown_event_is_a_message_definition_error():
    bundle = copy.deepcopy(immunisation().bundle)
    bundle["entry"][0]["resource"]["event"]["code"] = "ITK999X"
    assert rejected(bundle).response.code == "10004"


def test_a_message_without_the_handling_extension_is_a_handling_error():
    bundle = copy.deepcopy(immunisation().bundle)
    del bundle["entry"][0]["resource"]["extension"]
    assert rejected(bundle).response.code == "10001"


def test_a_composition_of_another_type_is_a_payload_failure():
    bundle = copy.deepcopy(immunisation().bundle)
    bundle["entry"][3]["resource"]["entry"][0]["resource"]["type"]["coding"][0]["code"] = "123"
    assert rejected(bundle).response.code == "20009"


def test_a_patient_without_an_nhs_number_is_a_payload_failure():
    bundle = copy.deepcopy(immunisation().bundle)
    for entry in bundle["entry"][3]["resource"]["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"] = [{"system": "urn:other", "value": "1"}]
    problem = rejected(bundle)
    assert problem.response.code == "20009" and "NHS Number" in problem.reason


def test_a_bundle_that_is_not_a_message_is_a_header_failure():
    bundle = copy.deepcopy(immunisation().bundle)
    bundle["type"] = "collection"
    assert rejected(bundle).response.code == "20006"
