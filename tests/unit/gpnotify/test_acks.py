"""ITK008M acknowledgements: built as ITK3 says (valid STU3, the acked message named, InfAck and
BusAck told apart), stable ids so a resend is never a second message, and parsed back to an Ack."""

from __future__ import annotations

import pytest

from gpnotify import IMMUNISATION
from gpnotify.acks import (
    BUS_ACK_DEFINITION,
    INF_ACK_DEFINITION,
    PATIENT_KNOWN,
    PATIENT_NOT_KNOWN,
    RESPONSE_CODES,
    SUCCESS,
    UNREADABLE,
    Ack,
    AckError,
    AckKind,
    build_ack,
    build_for,
    parse_ack,
)
from gpnotify.itk import Sender
from gpnotify.serialise import from_xml, validate

PRACTICE = Sender("A83627", "A83627OT001")
ACKED = "6f0c3bde-0ab4-5b3e-9d4c-8a8a0d6d2f10"


def infack(**kw):
    return build_for(IMMUNISATION, AckKind.INF, ACKED, SUCCESS, sender=PRACTICE, receiver_ods="FA565", **kw)


def header(message):
    return message.bundle["entry"][0]["resource"]


def handling(message):
    [ext] = header(message)["extension"]
    return {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}


def test_an_infack_is_valid_stu3_and_survives_xml():
    message = infack()
    validate(message.bundle)
    assert from_xml(message.xml())["identifier"] == message.bundle["identifier"]


def test_the_ack_names_the_acknowledged_message_and_travels_on_the_ack_workflow():
    message = infack()
    h = header(message)
    assert h["event"]["code"] == "ITK008M"
    assert h["response"]["identifier"] == ACKED
    assert h["response"]["code"] == "ok"
    assert handling(message)["SenderReference"] == ACKED
    assert message.workflow_id == "DIGMED_FLU_VAC_ACK"


def test_an_ack_requests_no_ack_itself():
    flags = handling(infack())
    assert (flags["InfAckRequested"], flags["BusAckRequested"]) == (False, False)


def test_infack_and_busack_have_their_own_message_definitions():
    bus = build_for(IMMUNISATION, AckKind.BUS, ACKED, PATIENT_KNOWN, sender=PRACTICE, receiver_ods="FA565")
    assert handling(infack())["MessageDefinition"]["reference"] == INF_ACK_DEFINITION
    assert handling(bus)["MessageDefinition"]["reference"] == BUS_ACK_DEFINITION


def test_the_ack_id_is_stable_per_kind_and_acked_message():
    again = infack()
    bus = build_for(IMMUNISATION, AckKind.BUS, ACKED, PATIENT_KNOWN, sender=PRACTICE, receiver_ods="FA565")
    assert infack().message_id == again.message_id
    assert bus.message_id != again.message_id


def test_a_negative_ack_is_a_fatal_error_with_the_itk_code_and_reason():
    message = build_ack(
        AckKind.INF,
        ACKED,
        UNREADABLE,
        sender=PRACTICE,
        receiver_ods="FA565",
        workflow_id="DIGMED_FLU_VAC_ACK",
        reason="not FHIR XML",
    )
    validate(message.bundle)
    assert header(message)["response"]["code"] == "fatal-error"
    outcome = message.bundle["entry"][-1]["resource"]
    [issue] = outcome["issue"]
    assert issue["severity"] == "fatal"
    assert issue["details"]["coding"][0] == {
        "system": RESPONSE_CODES,
        "code": "10009",
        "display": "Unreadable message received",
    }
    assert issue["diagnostics"] == "not FHIR XML"
    assert message.workflow_id == "DIGMED_FLU_VAC_ACK"


def test_a_positive_busack_must_carry_a_business_code():
    with pytest.raises(ValueError):
        build_for(IMMUNISATION, AckKind.BUS, ACKED, SUCCESS, sender=PRACTICE, receiver_ods="FA565")


@pytest.mark.parametrize(
    ("kind", "code", "ok"),
    [
        (AckKind.INF, SUCCESS, True),
        (AckKind.INF, UNREADABLE, False),
        (AckKind.BUS, PATIENT_KNOWN, True),
        (AckKind.BUS, PATIENT_NOT_KNOWN, False),
    ],
)
def test_what_is_built_parses_back_through_xml(kind, code, ok):
    reason = None if ok else "why"
    message = build_for(IMMUNISATION, kind, ACKED, code, sender=PRACTICE, receiver_ods="FA565", reason=reason)
    parsed = parse_ack(from_xml(message.xml()))
    assert parsed == Ack(
        acked_message_id=ACKED,
        kind=kind,
        ok=ok,
        code=code.code,
        reason=reason or code.display,
        response=code.response,
        message_id=message.message_id,
        sender_ods="A83627",
    )


def test_without_a_message_definition_the_code_prefix_tells_the_kind():
    message = build_for(
        IMMUNISATION, AckKind.BUS, ACKED, PATIENT_KNOWN, sender=PRACTICE, receiver_ods="FA565"
    )
    [ext] = header(message)["extension"]
    ext["extension"] = [e for e in ext["extension"] if e["url"] != "MessageDefinition"]
    assert parse_ack(message.bundle).kind is AckKind.BUS


def test_a_notification_is_not_an_ack():
    from tests.unit.gpnotify.examples import example

    with pytest.raises(AckError, match="ITK008M"):
        parse_ack(example("immunisation-JackDawkins-itk-wrapper.xml"))


def test_an_ack_without_the_acked_id_is_refused():
    message = infack()
    del header(message)["response"]["identifier"]
    with pytest.raises(AckError, match="response.identifier"):
        parse_ack(message.bundle)


def test_an_ack_to_a_sender_that_could_not_be_read_has_no_receiver_and_is_valid():
    message = build_ack(
        AckKind.INF, ACKED, UNREADABLE, sender=PRACTICE, receiver_ods=None, workflow_id="DIGMED_FLU_VAC"
    )
    validate(message.bundle)
    assert "receiver" not in header(message)
    assert parse_ack(message.bundle).code == "10009"
