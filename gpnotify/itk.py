"""The ITK3 envelope every Digital Medicine notification shares: the message Bundle, its MessageHeader
with the message-handling extension, the sender and receiver Organizations by ODS code, and the
document Bundle with its Composition.

Values come from the ITK3 Messaging Distribution and Digital Medicines specifications (nhs-facts §5)
and match the shared examples (../shared/examples/digital-medicine/); the tests hold them to it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from gpnotify.r4 import ODS_ORG, Resource
from gpnotify.stu3 import ITK, Converter

MESSAGE_EVENT = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2"
MESSAGE_HANDLING = ITK + "Extension-ITK-MessageHandling-2"
RECIPIENT_TYPE = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-RecipientType-1"
SNOMED = "http://snomed.info/sct"
RFC4122 = "https://tools.ietf.org/html/rfc4122"
CARE_SETTING = ITK + "Extension-CareSettingType-1"
# every notification's namespace for stable ids: the same stored resource version → the same message
NAMESPACE = uuid.UUID("0d6c2f0e-7f9a-5d37-9a59-6f1c2b8e4d14")


@dataclass(frozen=True)
class Kind:
    """One Digital Medicine notification: its ITK event, MESH workflow and Composition type."""

    name: str
    event: str
    event_display: str
    message_definition: str
    workflow_id: str
    composition_profile: str
    document_type: tuple[str, str]  # SNOMED code, display

    @property
    def ack_workflow_id(self) -> str:
        return self.workflow_id + "_ACK"


@dataclass(frozen=True)
class Sender:
    """The pharmacy sending: its ODS code and its MESH mailbox (``MessageHeader.source.endpoint``)."""

    ods: str
    mailbox: str


@dataclass(frozen=True)
class ItkMessage:
    """A built notification: what goes on MESH and what the pharmacy records about it."""

    kind: Kind
    message_id: str  # the Bundle identifier and the MESH localID: stable across rebuilds and retries
    receiver_ods: str  # the patient's registered GP practice
    bundle: dict[str, Any] = field(repr=False)

    @property
    def workflow_id(self) -> str:
        return self.kind.workflow_id

    def xml(self) -> bytes:
        """The message as FHIR XML, as ITK3 carries it over MESH."""
        from gpnotify.serialise import to_xml

        return to_xml(self.bundle)


def message_id_for(sender_ods: str, focus: Resource) -> str:
    """Our stable message id: one per sender and stored version of the clinical resource."""
    version = (focus.get("meta") or {}).get("versionId") or "1"
    name = f"{sender_ods}|{focus['resourceType']}/{focus['id']}/_history/{version}"
    return str(uuid.uuid5(NAMESPACE, name))


def timestamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def header_organization(ods: str, entry_uuid: str) -> Resource:
    return {
        "resourceType": "Organization",
        "id": entry_uuid,
        "meta": {"profile": [ITK + "CareConnect-ITK-Header-Organization-1"]},
        "identifier": [{"system": ODS_ORG, "value": ods}],
    }


def message_handling(
    *, acks_requested: bool, recipient_type: tuple[str, str], definition: str, sender_reference: str
) -> dict[str, Any]:
    """The ``Extension-ITK-MessageHandling-2`` of an ITK3 MessageHeader: which acks are asked for,
    for whom, the MessageDefinition, and (an ack) the id of the message it answers."""
    return {
        "url": MESSAGE_HANDLING,
        "extension": [
            {"url": "BusAckRequested", "valueBoolean": acks_requested},
            {"url": "InfAckRequested", "valueBoolean": acks_requested},
            {"url": "RecipientType", "valueCoding": coding(RECIPIENT_TYPE, *recipient_type)},
            {"url": "MessageDefinition", "valueReference": {"reference": definition}},
            {"url": "SenderReference", "valueString": sender_reference},
            {"url": "LocalExtension", "valueString": "None"},
        ],
    }


def message_bundle(
    kind: Kind, message_id: str, sender: Sender, receiver_ods: str, document: Resource, now: datetime | None
) -> Resource:
    """The ITK message around ``document``. Both acks are requested: the pharmacy records the GP's
    receipt (InfAck) and its filing (BusAck) per notification (issue 14, step 4)."""
    ids = {name: str(uuid.uuid5(uuid.UUID(message_id), name)) for name in ("header", "sender", "receiver")}
    header = {
        "resourceType": "MessageHeader",
        "id": ids["header"],
        "meta": {"profile": [ITK + "ITK-MessageHeader-2"]},
        "extension": [
            message_handling(
                acks_requested=True,
                recipient_type=("FA", "For Action"),
                definition=kind.message_definition,
                sender_reference="None",  # ITK3: "None" unless this message answers another
            )
        ],
        "event": coding(MESSAGE_EVENT, kind.event, kind.event_display),
        "receiver": {"reference": "urn:uuid:" + ids["receiver"]},
        "sender": {"reference": "urn:uuid:" + ids["sender"]},
        "timestamp": timestamp(now),
        "source": {"endpoint": sender.mailbox},
        "focus": [{"reference": "urn:uuid:" + document["id"]}],
    }
    entries = [
        header,
        header_organization(sender.ods, ids["sender"]),
        header_organization(receiver_ods, ids["receiver"]),
        document,
    ]
    return {
        "resourceType": "Bundle",
        "id": message_id,
        "meta": {"profile": [ITK + "ITK-Message-Bundle-1"]},
        "identifier": {"system": RFC4122, "value": message_id},
        "type": "message",
        "entry": [{"fullUrl": "urn:uuid:" + r["id"], "resource": r} for r in entries],
    }


def document_bundle(message_id: str, resources: list[Resource], now: datetime | None) -> Resource:
    """The document: the Composition first (FHIR documents require it), then every entry it needs."""
    doc_id = str(uuid.uuid5(uuid.UUID(message_id), "document"))
    return {
        "resourceType": "Bundle",
        "id": doc_id,
        "meta": {"lastUpdated": timestamp(now), "profile": [ITK + "ITK-Document-Bundle-1"]},
        "identifier": {"value": str(uuid.uuid5(uuid.UUID(message_id), "document-identifier"))},
        "type": "document",
        "entry": [{"fullUrl": "urn:uuid:" + r["id"], "resource": r} for r in resources],
    }


@dataclass
class Section:
    title: str
    code: dict[str, str]
    rows: list[list[tuple[str, str | list[str]]]]  # rows of (header or "", cell); a list → one <p> each
    entries: list[str] = field(default_factory=list)  # urn:uuid references
    div: str = ""  # a narrative written elsewhere (the pharmacist's own words), used instead of rows
    status: str = "additional"  # the narrative adds to the entries, as the examples say

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "title": self.title,
            "code": {"coding": [self.code]},
            "text": {"status": self.status, "div": self.div or table(self.rows)},
        }
        if self.entries:
            out["entry"] = [{"reference": e} for e in self.entries]
        return out


def table(rows: list[list[tuple[str, str | list[str]]]]) -> str:
    """The examples' narrative layout: one table, a row per fact, ``<th>`` naming it where it has a name."""
    html = []
    for row in rows:
        cells = []
        for head, cell in row:
            if head:
                cells.append(f"<th>{escape(head)}</th>")
            body = "".join(f"<p>{escape(p)}</p>" for p in cell) if isinstance(cell, list) else escape(cell)
            cells.append(f"<td>{body}</td>")
        html.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div xmlns="http://www.w3.org/1999/xhtml"><table width="100%"><tbody>'
        + "".join(html)
        + "</tbody></table></div>"
    )


def composition(
    kind: Kind,
    conv: Converter,
    *,
    subject: Resource,
    encounter: Resource | None,
    author: Resource,
    custodian: Resource,
    title: str,
    sections: list[Section],
    now: datetime | None,
) -> Resource:
    """The Composition: Pharmacy service care setting, the kind's SNOMED document type, and the
    patient's practice as custodian, as in the examples (the record is kept by the practice)."""
    out: Resource = {
        "resourceType": "Composition",
        "id": str(uuid.uuid5(uuid.UUID(conv.message_id), "composition")),
        "meta": {"profile": [kind.composition_profile]},
        "extension": [
            {
                "url": CARE_SETTING,
                "valueCodeableConcept": {"coding": [coding(SNOMED, "310080006", "Pharmacy service")]},
            }
        ],
        "identifier": {
            "system": RFC4122,
            "value": str(uuid.uuid5(uuid.UUID(conv.message_id), "composition-id")),
        },
        "status": "final",
        "type": {"coding": [coding(SNOMED, *kind.document_type)]},
        "subject": {"reference": conv.urn(subject)},
    }
    if encounter is not None:
        out["encounter"] = {"reference": conv.urn(encounter)}
    out["date"] = timestamp(now)
    out["author"] = [{"reference": conv.urn(author)}]
    out["title"] = title
    out["custodian"] = {"reference": conv.urn(custodian)}
    out["section"] = [s.resource() for s in sections]
    return out
