"""What a practice stores of a notification: the message as received, a DocumentReference made once
per ITK message id, the Immunization as R4; and a quarantine record for a message it could not take."""

from __future__ import annotations

import base64

from gpnotify.acks import UNREADABLE
from gpnotify.gp_records import (
    notification_fields,
    notification_transaction,
    quarantine_transaction,
)
from gpnotify.inbound import read_notification
from gpnotify.tracking import NOTIFICATION_SYSTEM
from tests.unit.gpnotify.notifications import emergency_supply, immunisation

PRACTICE = "A83627"


def stored(message):
    body = message.xml()
    note = read_notification(body, PRACTICE)
    return body, notification_transaction(note, body, "mesh-1", message.workflow_id, PRACTICE)


def by_type(bundle, rtype):
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_the_message_is_kept_as_received():
    body, tx = stored(immunisation())
    [binary] = by_type(tx, "Binary")
    assert base64.b64decode(binary["resource"]["data"]) == body
    assert binary["request"]["method"] == "PUT"


def test_the_document_reference_is_created_once_per_message_id():
    message = immunisation()
    _, tx = stored(message)
    [doc] = by_type(tx, "DocumentReference")
    assert doc["request"]["ifNoneExist"] == f"identifier={NOTIFICATION_SYSTEM}|{message.message_id}"
    r = doc["resource"]
    assert (r["status"], r["docStatus"]) == ("current", "preliminary")
    assert r["type"]["coding"][0]["code"] == "41000179103"
    assert r["subject"]["identifier"] == {
        "system": "https://fhir.nhs.uk/Id/nhs-number",
        "value": "9912003888",
    }
    assert r["author"][0]["identifier"]["value"] == "FA565"
    assert r["meta"]["security"][0]["code"] == PRACTICE
    fields = notification_fields(r)
    assert fields["senderMailbox"] == "FA565OT001" and fields["workflow"] == "DIGMED_FLU_VAC"


def test_the_immunization_is_stored_as_r4_and_linked_from_the_document():
    from fhir.resources.R4B.documentreference import DocumentReference
    from fhir.resources.R4B.immunization import Immunization

    _, tx = stored(immunisation())
    [imm] = by_type(tx, "Immunization")
    [doc] = by_type(tx, "DocumentReference")
    Immunization.model_validate(imm["resource"])
    DocumentReference.model_validate(doc["resource"])
    assert doc["resource"]["context"]["related"] == [{"reference": imm["fullUrl"]}]
    assert imm["resource"]["status"] == "completed"
    assert imm["resource"]["patient"]["identifier"]["value"] == "9912003888"


def test_an_emergency_supply_is_stored_as_the_document_only():
    _, tx = stored(emergency_supply(practice=PRACTICE))
    assert [e["resource"]["resourceType"] for e in tx["entry"]] == ["Binary", "DocumentReference"]


def test_a_quarantined_message_is_entered_in_error_with_its_reason():
    tx = quarantine_transaction(
        b"<junk/>",
        "mesh-9",
        UNREADABLE,
        "not XML",
        PRACTICE,
        message_id=None,
        sender_ods=None,
        workflow_id="W",
    )
    [doc] = by_type(tx, "DocumentReference")
    r = doc["resource"]
    assert r["status"] == "entered-in-error"
    assert "not XML" in r["description"]
    assert {c["code"] for c in r["category"][0]["coding"]} == {"quarantined", "10009"}
