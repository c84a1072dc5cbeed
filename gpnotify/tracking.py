"""The tracking record of a GP notification: one R4 ``Communication`` per ITK message, kept in the
pharmacy's store and labelled for the pharmacy (tenant) that sent it, so only it sees them.

The contract with the acknowledgement side (``gpnotify.acks``, ITK008M): a Communication is found by
``identifier=NOTIFICATION_SYSTEM|<ITK message id>`` (the message id is also the MESH ``localID`` and
the ITK message Bundle's identifier) and only ever moved forward: by ``sent`` (MESH accepted; the
worker) and ``failed`` (a dead letter) below, and by the acks the practice sends back, which
``gpnotify.ack_intake.apply_ack`` records (every ack kept in an extension; a positive BusAck makes
it ``completed``, a negative ack ``stopped``). Each returns the changed record to PUT
(version-checked: ``If-Match``), or None when there is nothing to change.

Shape:

- ``id``: ``gpn-`` + the message id's hex (one per message: a rebuild or a re-send of the same stored
  version writes the same record, never a second one);
- ``identifier``: ``NOTIFICATION_SYSTEM|<message id>``; once MESH accepted it, also
  ``MESH_MESSAGE_SYSTEM|<MESH message id>``;
- ``status`` (the meaning of each value here):

  ==================== =========================================================================
  ``preparation``      ``QUEUED``: the intent to send is recorded (outbox record written), MESH
                       has not accepted it yet (queued, or being retried through an outage)
  ``in-progress``      ``SENT``: MESH accepted it (``sent`` = when; MESH's message id in
                       ``identifier``; the recipient mailbox in ``MAILBOX_EXTENSION``). A positive
                       InfAck keeps this status (or moves a ``preparation`` one here: the ack
                       proves MESH delivered it) and is recorded by ``gpnotify.ack_intake``
  ``completed``        ``ACKNOWLEDGED``: the practice's positive BusAck (filed); ``received`` = when
  ``stopped``          ``FAILED``: MESH refused it for good (dead letter) or the practice answered a
                       negative InfAck/BusAck; ``statusReason.text`` says why (MESH's reason, or the
                       ack's), with the ITK response code in ``statusReason.coding`` when there is one
  ==================== =========================================================================

- ``category``: ``KIND_SYSTEM|<immunisation | emergency-supply | minor-illness-referral>``;
  ``topic``: the ITK event (ITK009D, ITK010D, ITK013D);
- ``about``: the stored clinical resource(s) notified (the Immunization, the MedicationDispenses, the
  consultation Encounter); ``encounter`` when there is one; ``subject``: the Patient;
- ``recipient``: the GP practice, by ODS identifier; ``sender``: the pharmacy, by ODS identifier.

"Which notifications to practice A83627 are not acknowledged yet?" is
``Communication?category=KIND_SYSTEM|&status=preparation,in-progress``
``&recipient-identifier=https://fhir.nhs.uk/Id/ods-organization-code|A83627``
(``recipient-identifier`` is ours, ``profiles/fhirplug``: HAPI has no ``:identifier`` modifier).
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from gpnotify.itk import ItkMessage
from gpnotify.r4 import ODS_ORG, Resource
from hubspoke.identifiers import TENANT_SYSTEM

NOTIFICATION_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/gp-notification"
MESH_MESSAGE_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/mesh-message-id"
KIND_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/gp-notification-kind"
ITK_EVENT_SYSTEM = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-MessageEvent-2"
MAILBOX_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/gp-notification-mailbox"
ITK_RESPONSE_SYSTEM = "https://fhir.nhs.uk/STU3/CodeSystem/ITK-ResponseCodes-2"

QUEUED = "preparation"
SENT = "in-progress"
ACKNOWLEDGED = "completed"
FAILED = "stopped"
# how far along each status is: a record only moves forward (a late "accepted" never undoes an ack)
_ORDER = {QUEUED: 0, SENT: 1, ACKNOWLEDGED: 2, FAILED: 2}


def communication_id(message_id: str) -> str:
    return "gpn-" + uuid.UUID(message_id).hex


def now_iso(now: datetime | None = None) -> str:
    return (
        (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def communication(
    message: ItkMessage,
    *,
    about: list[str],
    patient: str | None,
    encounter: str | None,
    pharmacy_ods: str,
    now: datetime | None = None,
) -> Resource:
    """The record of a notification just queued (``preparation``). ``about``: the notified resources
    (``Type/id``); ``patient``, ``encounter``: ``Type/id`` or None."""
    out: Resource = {
        "resourceType": "Communication",
        "id": communication_id(message.message_id),
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": pharmacy_ods}]},
        "identifier": [{"system": NOTIFICATION_SYSTEM, "value": message.message_id}],
        "status": QUEUED,
        "category": [
            {
                "coding": [
                    {"system": KIND_SYSTEM, "code": message.kind.name, "display": message.kind.event_display}
                ]
            }
        ],
        "topic": {"coding": [{"system": ITK_EVENT_SYSTEM, "code": message.kind.event}]},
        "about": [{"reference": r} for r in about],
        "recipient": [{"identifier": {"system": ODS_ORG, "value": message.receiver_ods}}],
        "sender": {"identifier": {"system": ODS_ORG, "value": pharmacy_ods}},
        "note": [
            {
                "time": now_iso(now),
                "text": f"{message.kind.event} queued for MESH workflow {message.workflow_id}",
            }
        ],
    }
    if patient:
        out["subject"] = {"reference": patient}
    if encounter:
        out["encounter"] = {"reference": encounter}
    return out


def _moved(current: Resource, status: str) -> Resource | None:
    """A copy to change, or None when ``current`` is already as far along (or further)."""
    if _ORDER.get(current.get("status", QUEUED), 0) > _ORDER[status]:
        return None
    if current.get("status") in (ACKNOWLEDGED, FAILED):
        return None  # final
    return copy.deepcopy(current)


def sent(
    current: Resource, *, mesh_message_id: str | None, mailbox: str, now: datetime | None = None
) -> Resource | None:
    """``current`` once MESH accepted the message; None when there is nothing to change."""
    out = _moved(current, SENT)
    if out is None:
        known = {(i.get("system"), i.get("value")) for i in current.get("identifier") or []}
        if not mesh_message_id or (MESH_MESSAGE_SYSTEM, mesh_message_id) in known:
            return None
        out = copy.deepcopy(current)  # an ack overtook us: keep its status, add what we know
    else:
        out["status"] = SENT
        out.setdefault("sent", now_iso(now))
    idents = out.setdefault("identifier", [])
    if mesh_message_id and not any(i.get("system") == MESH_MESSAGE_SYSTEM for i in idents):
        idents.append({"system": MESH_MESSAGE_SYSTEM, "value": mesh_message_id})
    exts = [e for e in out.get("extension") or [] if e.get("url") != MAILBOX_EXTENSION]
    out["extension"] = [*exts, {"url": MAILBOX_EXTENSION, "valueString": mailbox}]
    return out if out != current else None


def failed(
    current: Resource, reason: str, *, code: str | None = None, now: datetime | None = None
) -> Resource | None:
    """``current`` once the notification failed for good (a dead letter, a negative ack)."""
    out = _moved(current, FAILED)
    if out is None:
        return None
    out["status"] = FAILED
    status_reason: dict[str, Any] = {"text": reason[:1000]}
    if code:
        status_reason["coding"] = [{"system": ITK_RESPONSE_SYSTEM, "code": code}]
    out["statusReason"] = status_reason
    out.setdefault("note", []).append({"time": now_iso(now), "text": reason[:1000]})
    return out


def message_id_of(communication: Resource) -> str | None:
    for ident in communication.get("identifier") or []:
        if ident.get("system") == NOTIFICATION_SYSTEM:
            return ident.get("value")
    return None
