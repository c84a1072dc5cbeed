"""What a GP practice stores of a received notification, as R4 (a store transaction), and of a
message it quarantined.

A notification becomes:

- a ``Binary``: the message exactly as received (FHIR XML), id derived from the ITK message id;
- a ``DocumentReference``: ``status`` current, ``docStatus`` preliminary (received, not yet filed),
  ``identifier`` ``NOTIFICATION_SYSTEM`` | the ITK message id (the conditional create that makes a
  redelivery store nothing), ``masterIdentifier`` the document Bundle's identifier, ``type`` the
  Composition's SNOMED type, ``subject`` the patient by NHS Number (a logical reference: searchable
  with ``patient-identifier``, profiles/fhirplug), ``author`` the sending pharmacy by ODS code,
  ``custodian`` this practice, ``content`` the Binary, ``context.related`` the R4 resources mapped
  from the document, and the ``NOTIFICATION_EXTENSION`` with what a BusAck needs later (ITK event,
  MESH workflow, sender mailbox, whether a BusAck was asked for);
- where the mapping is clean, the clinical content as R4: each ``Immunization`` (ITK009D). The
  emergency supply's MedicationDispenses and the minor illness referral's content stay in the
  document only: their STU3 shapes lean on document-internal Medications, Lists and narrative, and
  a half-mapped dispense would be a worse record than the document the practice files.

A quarantined message becomes a ``Binary`` (as received) and a ``DocumentReference`` with ``status``
``entered-in-error``, the reason in ``description`` and the ITK3 code in ``category``: one search
(``DocumentReference?status=entered-in-error&category=…``) lists them, beside everything received.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from gpnotify.acks import RESPONSE_CODES, ResponseCode
from gpnotify.inbound import Notification
from gpnotify.r4 import NHS_NUMBER, ODS_ORG, Resource
from gpnotify.tracking import NOTIFICATION_SYSTEM
from hubspoke.identifiers import TENANT_SYSTEM

NOTIFICATION_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/gp-notification"
ENTRY_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/gp-notification-entry"  # message id / STU3 entry
MESH_MESSAGE_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/mesh-message-id"
QUARANTINE_CATEGORY = "https://fhirplug.org/fhir/CodeSystem/gp-notification-quarantine"
XML = "application/fhir+xml"
NAMESPACE = uuid.UUID("8e3f0b52-61a4-5c1d-b7e9-0a4d2c6f9e13")


def stored_id(message_id: str, what: str) -> str:
    """A store id derived from the message: the same message always lands on the same ids."""
    return str(uuid.uuid5(NAMESPACE, f"{message_id}|{what}"))


def search_by_message(message_id: str) -> dict[str, str]:
    return {"identifier": f"{NOTIFICATION_SYSTEM}|{message_id}"}


def notification_transaction(
    note: Notification,
    body: bytes,
    mesh_message_id: str,
    workflow_id: str,
    tenant: str,
    reply_to: str | None = None,
) -> Resource:
    """The store transaction for a received notification (see the module docstring). ``reply_to``:
    the MESH mailbox acks go to (MESH's ``From``; the message's own ``source.endpoint`` if None)."""
    binary_id = stored_id(note.message_id, "binary")
    related = [_immunization(note, imm, tenant) for imm in note.resources("Immunization")]
    related_entries = [(str(uuid.uuid4()), r) for r in related]
    doc: Resource = {
        "resourceType": "DocumentReference",
        "meta": _meta(tenant),
        "extension": [
            {
                "url": NOTIFICATION_EXTENSION,
                "extension": [
                    {"url": "messageId", "valueString": note.message_id},
                    {"url": "event", "valueString": note.kind.event},
                    {"url": "workflow", "valueString": workflow_id or note.kind.workflow_id},
                    {"url": "senderOds", "valueString": note.sender_ods},
                    {"url": "senderMailbox", "valueString": reply_to or note.sender_mailbox},
                    {"url": "busAckRequested", "valueBoolean": note.bus_ack_requested},
                ],
            }
        ],
        "identifier": [
            {"system": NOTIFICATION_SYSTEM, "value": note.message_id},
            {"system": MESH_MESSAGE_SYSTEM, "value": mesh_message_id},
        ],
        "status": "current",
        "docStatus": "preliminary",
        "type": {"coding": [note.document_type]},
        "subject": {"identifier": {"system": NHS_NUMBER, "value": note.nhs_number}},
        "author": [{"identifier": {"system": ODS_ORG, "value": note.sender_ods}}],
        "custodian": {"identifier": {"system": ODS_ORG, "value": note.receiver_ods}},
        "content": [{"attachment": {"contentType": XML, "url": f"Binary/{binary_id}"}}],
    }
    if note.document_id:
        doc["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{note.document_id}"}
    if note.patient_name:
        doc["subject"]["display"] = note.patient_name
    if note.sender_name:
        doc["author"][0]["display"] = note.sender_name
    if note.date:
        doc["date"] = _instant(note.date)
    if note.title:
        doc["description"] = note.title
        doc["content"][0]["attachment"]["title"] = note.title
    if related_entries:
        doc["context"] = {"related": [{"reference": f"urn:uuid:{u}"} for u, _ in related_entries]}
    entries = [
        _binary_entry(binary_id, body, tenant),
        {
            "fullUrl": f"urn:uuid:{stored_id(note.message_id, 'document-reference')}",
            "resource": doc,
            "request": {
                "method": "POST",
                "url": "DocumentReference",
                "ifNoneExist": f"identifier={NOTIFICATION_SYSTEM}|{note.message_id}",
            },
        },
    ]
    for u, r in related_entries:
        ident = r["identifier"][0]
        entries.append(
            {
                "fullUrl": f"urn:uuid:{u}",
                "resource": r,
                "request": {
                    "method": "POST",
                    "url": r["resourceType"],
                    "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def quarantine_transaction(
    body: bytes,
    mesh_message_id: str,
    response: ResponseCode,
    reason: str,
    tenant: str,
    *,
    message_id: str | None,
    sender_ods: str | None,
    workflow_id: str,
) -> Resource:
    """The store transaction for a message that broke an ITK rule: kept, never filed."""
    key = message_id or f"mesh:{mesh_message_id}"
    binary_id = stored_id(key, "quarantine-binary")
    doc: Resource = {
        "resourceType": "DocumentReference",
        "meta": _meta(tenant),
        "identifier": [{"system": MESH_MESSAGE_SYSTEM, "value": mesh_message_id}],
        "status": "entered-in-error",
        "category": [
            {
                "coding": [
                    {"system": QUARANTINE_CATEGORY, "code": "quarantined", "display": "Quarantined"},
                    {"system": RESPONSE_CODES, "code": response.code, "display": response.display},
                ]
            }
        ],
        "description": f"quarantined ({workflow_id or 'no workflow'}): {reason}"[:1000],
        "content": [{"attachment": {"contentType": XML, "url": f"Binary/{binary_id}"}}],
    }
    if message_id:
        doc["identifier"].append({"system": ENTRY_SYSTEM, "value": message_id})
    if sender_ods:
        doc["author"] = [{"identifier": {"system": ODS_ORG, "value": sender_ods}}]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _binary_entry(binary_id, body, tenant),
            {
                "resource": doc,
                "request": {
                    "method": "POST",
                    "url": "DocumentReference",
                    "ifNoneExist": f"identifier={MESH_MESSAGE_SYSTEM}|{mesh_message_id}",
                },
            },
        ],
    }


def notification_fields(doc: Resource) -> dict[str, Any]:
    """The ``NOTIFICATION_EXTENSION`` of a stored DocumentReference, as a dict."""
    for ext in doc.get("extension") or []:
        if ext.get("url") == NOTIFICATION_EXTENSION:
            return {
                e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                for e in ext.get("extension") or []
            }
    return {}


def _meta(tenant: str) -> dict[str, Any]:
    # the practice's own tenant label: its users see what it received (hubspoke.tenants)
    return {"security": [{"system": TENANT_SYSTEM, "code": tenant}]} if tenant else {}


def _binary_entry(binary_id: str, body: bytes, tenant: str) -> Resource:
    return {
        "fullUrl": f"Binary/{binary_id}",
        "resource": {
            "resourceType": "Binary",
            "id": binary_id,
            "meta": _meta(tenant),
            "contentType": XML,
            "data": base64.b64encode(body).decode("ascii"),
        },
        "request": {"method": "PUT", "url": f"Binary/{binary_id}"},
    }


def _instant(value: str) -> str:
    """DocumentReference.date is an instant: a bare date gets midnight UTC."""
    return value if "T" in value else value + "T00:00:00Z"


def _immunization(note: Notification, stu3: Resource, tenant: str) -> Resource:
    """The R4 Immunization of an STU3 CareConnect-ITK-DM-Immunization: the elements whose meaning
    did not change between versions; references into the document become displays (or, for the
    patient, the NHS Number) since the document's resources are not stored one by one."""
    out: Resource = {
        "resourceType": "Immunization",
        "meta": _meta(tenant),
        "identifier": [
            {"system": ENTRY_SYSTEM, "value": f"{note.message_id}/{stu3.get('id')}"},
            *[i for i in stu3.get("identifier") or [] if i.get("system") and i.get("value")],
        ],
        "status": "not-done" if stu3.get("notGiven") else "completed",
        "vaccineCode": stu3.get("vaccineCode") or {"text": "unknown"},
        "patient": {"identifier": {"system": NHS_NUMBER, "value": note.nhs_number}},
    }
    if note.patient_name:
        out["patient"]["display"] = note.patient_name
    out["occurrenceDateTime"] = stu3.get("date") or note.date
    for name in ("primarySource", "lotNumber", "expirationDate", "site", "route", "doseQuantity", "note"):
        if stu3.get(name) is not None:
            out[name] = stu3[name]
    for ext in stu3.get("extension") or []:
        if ext.get("url", "").endswith("Extension-CareConnect-DateRecorded-1") and ext.get("valueDateTime"):
            out["recorded"] = ext["valueDateTime"]
    manufacturer = (stu3.get("manufacturer") or {}).get("display")
    if manufacturer:
        out["manufacturer"] = {"display": manufacturer}
    performers = []
    for p in stu3.get("practitioner") or []:
        actor = (p.get("actor") or {}).get("display")
        if actor:
            item: dict[str, Any] = {"actor": {"display": actor}}
            if p.get("role"):
                item["function"] = _r4_codes(p["role"])
            performers.append(item)
    if performers:
        out["performer"] = performers
    reasons = (stu3.get("explanation") or {}).get("reason")
    if reasons:
        out["reasonCode"] = reasons
    protocols = []
    for proto in stu3.get("vaccinationProtocol") or []:
        applied: dict[str, Any] = {}
        if proto.get("doseSequence"):
            applied["doseNumberPositiveInt"] = proto["doseSequence"]
        if proto.get("targetDisease"):
            applied["targetDisease"] = proto["targetDisease"]
        if applied.get("doseNumberPositiveInt"):  # R4 requires the dose number
            protocols.append(applied)
    if protocols:
        out["protocolApplied"] = protocols
    return {k: v for k, v in out.items() if v is not None}


def _r4_codes(concept: dict[str, Any]) -> dict[str, Any]:
    """STU3's v2 table systems under their R4 terminology.hl7.org names."""
    out = dict(concept)
    out["coding"] = [
        {
            **c,
            "system": c["system"].replace(
                "http://hl7.org/fhir/v2/", "http://terminology.hl7.org/CodeSystem/v2-"
            ),
        }
        if isinstance(c.get("system"), str)
        else c
        for c in concept.get("coding") or []
    ]
    return out
