"""The HL7 V3 signature fragments EPS makes a prescriber sign, built from a FHIR message.

EPS translates the whole prescription-order message to a V3 ParentPrescription and then copies
out five parts: the prescription id, the author time, the author's AgentPerson, the
recordTarget and each line item (without its status and repeatNumber.low). We build just those
parts, in the order and shape EPS gives them, and check on the way what EPS would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from eps._fhir import Message, identifier_value, invalid, obj, objs, text
from eps.v3_agent_person import agent_person
from eps.v3_line_item import course_of_therapy, line_item, repeat_high
from eps.v3_patient import nhs_number, record_target
from eps.v3_prescription import author_time, check_short_form_id, id_fragment, prescription_ids, time_fragment
from hubspoke.nhs_number import nhs_number_valid

PRESCRIPTION_ORDER = "prescription-order"
MAX_LINE_ITEMS = 4  # EPS's limit on MedicationRequests in one prescription
_MESSAGE_ID_SYSTEM = "https://tools.ietf.org/html/rfc4122"
_RESPONSIBLE_PRACTITIONER_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-DM-ResponsiblePractitioner"
# fields every MedicationRequest of one prescription must share (a subset of EPS's own list)
_IDENTICAL_FIELDS = ("groupIdentifier", "requester", "subject", "authoredOn")


@dataclass(frozen=True)
class Fragments:
    """The signed parts of one prescription; ``time`` is the V3 author time (YYYYMMDDHHMMSS, UTC)."""

    time: str
    id: etree._Element
    time_element: etree._Element
    agent_person: etree._Element
    record_target: etree._Element
    line_items: tuple[etree._Element, ...]


def message_of(bundle: object) -> Message:
    """The bundle as a prescription-order message, or the FhirError(400) EPS would answer."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise invalid("Incorrect FHIR resource type. Expected Bundle.", "Bundle")
    if bundle.get("type") != "message":
        raise invalid(f"Bundle.type must be 'message', not '{bundle.get('type')}'.", "Bundle.type")
    message = Message(bundle)
    header = message.one_of_type("MessageHeader")
    event = obj(header.get("eventCoding"), "MessageHeader.eventCoding")
    if event.get("code") != PRESCRIPTION_ORDER:
        raise invalid(
            "MessageHeader.eventCoding.code must be 'prescription-order'.", "MessageHeader.eventCoding.code"
        )
    identifier = obj(bundle.get("identifier"), "Bundle.identifier")
    identifier_value([identifier], _MESSAGE_ID_SYSTEM, "Bundle.identifier")
    return message


def _medication_requests(message: Message) -> list[dict[str, Any]]:
    requests = message.of_type("MedicationRequest")
    if not requests:
        raise invalid(
            "Too few values submitted. Expected at least 1 element where "
            "resource.resourceType == 'MedicationRequest'.",
            "Bundle.entry",
        )
    if len(requests) > MAX_LINE_ITEMS:
        raise invalid(
            "Bundle contains too many resources of type MedicationRequest. "
            f"Expected at most {MAX_LINE_ITEMS}.",
            "Bundle.entry",
            code="processing",
        )
    for field in _IDENTICAL_FIELDS:
        values = []
        for request in requests:
            value = request.get(field)
            if value not in values:
                values.append(value)
        if len(values) > 1:
            received = json.dumps(values, separators=(",", ":"), default=str)
            raise invalid(
                f"Expected all MedicationRequests to have the same value for {field}. Received {received}.",
                f"Bundle.entry.resource.ofType(MedicationRequest).{field}",
            )
    return requests


def _communication_texts(message: Message) -> tuple[list[str], list[str]]:
    """(medication list, patient information): what CommunicationRequests add to the first item."""
    payloads: list[dict[str, Any]] = []
    for request in message.of_type("CommunicationRequest"):
        payloads.extend(p for p in objs(request.get("payload"), "CommunicationRequest.payload") if p)
    medication_list: list[str] = []
    for payload in payloads:
        if payload.get("contentReference"):
            path = "CommunicationRequest.payload.contentReference"
            listed = message.resolve(payload.get("contentReference"), path, "List")
            for entry in objs(listed.get("entry"), "List.entry"):
                display = (
                    obj(entry.get("item"), "List.entry.item").get("display") if entry.get("item") else None
                )
                if display:
                    medication_list.append(text(display, "List.entry.item.display"))
    patient_info = [
        text(p.get("contentString"), "CommunicationRequest.payload.contentString")
        for p in payloads
        if p.get("contentString")
    ]
    return medication_list, patient_info


def build(bundle: object, now: datetime | None = None, *, check_ids: bool = True) -> Fragments:
    """Every signature fragment of a prescription-order message (``now``: the unsigned author time).

    ``check_ids=False`` skips the short-form id check character, which EPS's own $prepare does
    not check (Spine refuses a bad one at $process-message); the conformance tool uses it.
    """
    message = message_of(bundle)
    requests = _medication_requests(message)
    first = requests[0]

    patient = message.one_of_type("Patient")
    number = nhs_number(patient)
    if not nhs_number_valid(number):
        raise invalid(f"Invalid NHS Number '{number}': the check digit does not match.", "Patient.identifier")

    course = course_of_therapy(requests)
    high = repeat_high(requests, course)
    long_form, short_form = prescription_ids(first)
    if check_ids:
        check_short_form_id(short_form)

    requester = obj(first.get("requester"), "MedicationRequest.requester")
    role = message.resolve(requester, "MedicationRequest.requester", "PractitionerRole")
    responsible = next(
        (
            e
            for e in objs(first.get("extension"), "MedicationRequest.extension")
            if e.get("url") == _RESPONSIBLE_PRACTITIONER_URL
        ),
        None,
    )
    if responsible is not None:  # not signed, but EPS refuses a message whose reference dangles
        path = "MedicationRequest.extension.valueReference"
        message.resolve(responsible.get("valueReference"), path, "PractitionerRole")

    time = author_time(message, requester, now)
    medication_list, patient_info = _communication_texts(message)
    items = [line_item(message, first, high, medication_list, patient_info)]
    items += [line_item(message, request, high, [], []) for request in requests[1:]]
    return Fragments(
        time=time,
        id=id_fragment(long_form),
        time_element=time_fragment(time),
        agent_person=agent_person(message, role),
        record_target=record_target(patient),
        line_items=tuple(items),
    )
