"""Reading a notification a GP practice received over MESH: STU3 structure and the ITK rules checked,
the facts the practice stores pulled out — or a ``Rejected`` naming the ITK3 response code, the reason,
and whatever could still be read of who sent which message (so a negative InfAck can go back).

The rules, each with the ITK3 code a failure earns (nhs-facts §5, ITK3 "Response Codes"):

- FHIR XML that reads as an STU3 Bundle at all — else 10009 unreadable (reading it through the STU3
  models is already structural validation: XML that is not valid STU3 does not read, and its
  errors do not say reliably where, so it is "unreadable" rather than a header or payload failure);
- a message Bundle whose first entry is a MessageHeader, structurally valid STU3 — else 20006;
- the message-handling extension present — else 10001;
- an event we know (ITK009D, ITK010D, ITK013D) — else 10004 (message type not supported here);
- the receiver Organization is this practice by ODS code — else 20002;
- a focus document Bundle with a Composition first, of the event's SNOMED document type, and a
  Patient with an NHS Number — else 20009.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpnotify import KINDS
from gpnotify.acks import (
    HANDLING_ERROR,
    HEADER_INVALID,
    MESSAGE_DEFINITION_ERROR,
    PAYLOAD_INVALID,
    UNKNOWN_RECIPIENT_ORG,
    UNREADABLE,
    ResponseCode,
)
from gpnotify.itk import MESSAGE_HANDLING, SNOMED, Kind
from gpnotify.r4 import NHS_NUMBER, ODS_ORG, Resource

KIND_BY_EVENT = {k.event: k for k in KINDS}


@dataclass(frozen=True)
class Notification:
    """A received notification that passed every rule."""

    kind: Kind
    message_id: str  # the ITK message Bundle identifier (what the sender tracks and the ack names)
    header_id: str
    sender_ods: str
    sender_mailbox: str  # MessageHeader.source.endpoint
    receiver_ods: str
    inf_ack_requested: bool
    bus_ack_requested: bool
    document_id: str | None  # the document Bundle's identifier
    document_type: dict[str, Any]  # the Composition's SNOMED coding
    title: str | None
    date: str | None  # Composition.date
    nhs_number: str
    patient_name: str | None
    sender_name: str | None
    document: Resource = field(repr=False)  # the STU3 document Bundle

    def resources(self, resource_type: str) -> list[Resource]:
        return [
            e.get("resource") or {}
            for e in self.document.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == resource_type
        ]


class Rejected(Exception):
    """The message broke an ITK rule. ``message_id``/``sender_ods``/``kind``: what could be read."""

    def __init__(
        self,
        response: ResponseCode,
        reason: str,
        *,
        message_id: str | None = None,
        sender_ods: str | None = None,
        kind: Kind | None = None,
        inf_ack_requested: bool = True,
    ):
        super().__init__(f"{response.code} {response.display}: {reason}")
        self.response = response
        self.reason = reason
        self.message_id = message_id
        self.sender_ods = sender_ods
        self.kind = kind
        # ITK3: when the flags cannot be read, a response is returned anyway
        self.inf_ack_requested = inf_ack_requested


def read_notification(body: bytes, own_ods: str) -> Notification:
    """The notification ``body`` (FHIR XML as received) carries, for the practice ``own_ods``."""
    from gpnotify.serialise import from_xml, validate

    try:
        bundle = from_xml(body)
    except Exception as exc:  # any parse failure: not readable as an STU3 Bundle
        raise Rejected(UNREADABLE, f"not an STU3 FHIR XML Bundle ({exc.__class__.__name__})") from None
    message_id = _message_id(bundle)
    entries = [e.get("resource") or {} for e in bundle.get("entry") or []]
    header = entries[0] if entries else {}
    by_url = {e.get("fullUrl"): e.get("resource") or {} for e in bundle.get("entry") or []}
    sender = by_url.get((header.get("sender") or {}).get("reference")) or {}
    sender_ods = _ods(sender)
    seen: dict[str, Any] = {"message_id": message_id, "sender_ods": sender_ods}
    if bundle.get("type") != "message" or header.get("resourceType") != "MessageHeader":
        raise Rejected(HEADER_INVALID, "not an ITK message Bundle with a MessageHeader first", **seen)
    try:
        validate(bundle)
    except Exception as exc:
        raise Rejected(HEADER_INVALID, f"STU3 structure: {exc}"[:500], **seen) from None
    handling = _handling(header)
    if handling is None:
        raise Rejected(HANDLING_ERROR, "no Extension-ITK-MessageHandling-2 on the MessageHeader", **seen)
    flags = {
        "inf_ack_requested": handling.get("InfAckRequested") is not False,
        "bus_ack_requested": handling.get("BusAckRequested") is True,
    }
    kind = KIND_BY_EVENT.get(str((header.get("event") or {}).get("code")))
    if kind is None:
        event = (header.get("event") or {}).get("code")
        raise Rejected(
            MESSAGE_DEFINITION_ERROR,
            f"event {event!r} is not a notification this practice takes",
            inf_ack_requested=flags["inf_ack_requested"],
            **seen,
        )
    seen.update(kind=kind, inf_ack_requested=flags["inf_ack_requested"])
    receiver_ods = _ods(by_url.get((header.get("receiver") or {}).get("reference")) or {})
    if not receiver_ods or receiver_ods.upper() != own_ods.upper():
        raise Rejected(
            UNKNOWN_RECIPIENT_ORG, f"the receiver {receiver_ods!r} is not this practice ({own_ods})", **seen
        )
    if not message_id or not sender_ods:
        raise Rejected(HEADER_INVALID, "the message has no identifier or its sender no ODS code", **seen)
    focus = [by_url.get(f.get("reference")) or {} for f in header.get("focus") or []]
    document = next((r for r in focus if r.get("resourceType") == "Bundle"), None)
    if document is None or document.get("type") != "document":
        raise Rejected(PAYLOAD_INVALID, "MessageHeader.focus names no document Bundle", **seen)
    doc_entries = [e.get("resource") or {} for e in document.get("entry") or []]
    composition = doc_entries[0] if doc_entries else {}
    if composition.get("resourceType") != "Composition":
        raise Rejected(PAYLOAD_INVALID, "the document Bundle does not start with a Composition", **seen)
    doc_type = next(
        (
            c
            for c in (composition.get("type") or {}).get("coding") or []
            if c.get("system") == SNOMED and c.get("code") == kind.document_type[0]
        ),
        None,
    )
    if doc_type is None:
        raise Rejected(
            PAYLOAD_INVALID,
            f"Composition.type is not SNOMED {kind.document_type[0]} for {kind.event}",
            **seen,
        )
    patient = next((r for r in doc_entries if r.get("resourceType") == "Patient"), {})
    nhs = next(
        (i.get("value") for i in patient.get("identifier") or [] if i.get("system") == NHS_NUMBER), None
    )
    if not nhs:
        raise Rejected(PAYLOAD_INVALID, "the document's Patient has no NHS Number", **seen)
    return Notification(
        kind=kind,
        message_id=message_id,
        header_id=str(header.get("id") or ""),
        sender_ods=sender_ods,
        sender_mailbox=str((header.get("source") or {}).get("endpoint") or ""),
        receiver_ods=receiver_ods,
        document_id=(document.get("identifier") or {}).get("value"),
        document_type=doc_type,
        title=composition.get("title"),
        date=composition.get("date"),
        nhs_number=str(nhs),
        patient_name=_name(patient),
        sender_name=sender.get("name"),
        document=document,
        **flags,
    )


def _message_id(bundle: Resource) -> str | None:
    value = (bundle.get("identifier") or {}).get("value") or bundle.get("id")
    return str(value) if value else None


def _ods(org: Resource) -> str | None:
    return next((i.get("value") for i in org.get("identifier") or [] if i.get("system") == ODS_ORG), None)


def _handling(header: Resource) -> dict[str, Any] | None:
    for ext in header.get("extension") or []:
        if ext.get("url") == MESSAGE_HANDLING:
            return {
                e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                for e in ext.get("extension") or []
            }
    return None


def _name(patient: Resource) -> str | None:
    name = (patient.get("name") or [{}])[0]
    family, given = name.get("family") or "", " ".join(name.get("given") or [])
    return f"{family.upper()}, {given}".strip(", ") or None
