"""The ``prescription-order`` event: a prescriber's signed prescription, checked and kept.

In order, the first failure being the answer:

1. the short-form prescription id's check character (ISO 7064 MOD 37-2), refused as Spine
   refuses it (``FAILURE_TO_PROCESS_MESSAGE`` "... prescriptionID has invalid checksum");
2. EPS's checks of the message: everything ``eps.prepare`` refuses (NHS Number check digit, one
   course of therapy, at most 4 line items, the same groupIdentifier, requester, subject and
   authoredOn on every item, ...), then what EPS's bundle validator adds: each
   MedicationRequest ``status`` ``active``, ``intent`` order, original-order or instance-order
   (EPS's own rule and wording), unique line item ids, one nominated pharmacy;
3. the sender: the client's ODS code must be the prescribing organisation, i.e. the ODS code of
   the requester PractitionerRole's Organization, or of that Organization's ``partOf`` (a trust
   sending for one of its units). Both are inside the signed AgentPerson, so the check rests on
   signed content. ``MessageHeader.sender``, when it names an ODS code, must be the client's too;
   the short-form id's middle part is not used (secondary care ids do not carry the sender);
4. the prescriber's signature (``eps.verify.verify_bundle_signature``) over the fragments built
   in step 2, against the deployment's trust anchors, the certificate current now;
5. not this very message again (same sender and message id: a resend the dispatcher's Redis
   record no longer knows, answered as before with nothing stored; other content under that id
   is 409), nor a second prescription under a short-form id the prescriber already used;

then ONE store transaction, acting as the prescriber (so the store's own tenancy line judges
it): ``eps.records.prescription_transaction`` (message, parts, tracking Task carrying the message
key and content hash) plus the "received" AuditEvent naming the client.

Trust anchors are the deployment's (``FHIRPLUG_EPS_TRUST_DIR``), given once at start through
``configure``. Without them a prescription is never stored: the event answers 503 (the
deployment cannot process it; the sender may resubmit once it is configured) and says why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from eps import audit, messaging, records
from eps._fhir import Message
from eps.events import EpsStore, EventResult, Sender
from eps.prepare import signed_parts
from eps.v3_patient import nhs_number
from eps.v3_prescription import short_form_id_valid
from eps.verify import verify_bundle_signature
from hubspoke.identifiers import ODS_SYSTEM
from proxy.errors import FhirError

SPINE_CODES = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode"
ALLOWED_INTENTS = ("order", "original-order", "instance-order")
MR = "Bundle.entry.resource.ofType(MedicationRequest)"


@dataclass
class _Trust:
    anchors: list[x509.Certificate] | None = None  # None: not configured, nothing is accepted


_trust = _Trust()


def configure(trust_anchors: Sequence[x509.Certificate] | None) -> None:
    """The deployment's trust anchors (``eps.certificates.load_trust_anchors``), once at start."""
    _trust.anchors = list(trust_anchors) if trust_anchors is not None else None


class CodedRefusal(FhirError):
    """A refusal that also carries EPS's coded ``details`` (Spine's error codes)."""

    def __init__(self, status: int, diagnostics: str, expression: list[str], code: str, details: dict):
        super().__init__(status, diagnostics, expression, code)
        self.details = details

    def to_resource(self) -> dict:
        outcome = super().to_resource()
        outcome["issue"][0]["details"] = {"coding": [dict(self.details)]}
        return outcome


@dataclass(frozen=True)
class Checked:
    """What the store transaction needs of a checked prescription-order."""

    message_id: str
    short_id: str
    nhs_number: str
    authored_on: str
    nominated_ods: str | None


def handle(message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult:
    """``prescription-order``: check, verify, store; raises ``FhirError`` for a message at fault."""
    if _trust.anchors is None:
        raise FhirError(
            503,
            "This deployment has no trust anchors for prescribers' signatures "
            "(FHIRPLUG_EPS_TRUST_DIR), so it cannot accept prescriptions now",
            headers={"Retry-After": "300"},
        )
    checked = check(message, sender, now, _trust.anchors)
    as_prescriber = store.as_caller("prescriber", sender.ods)
    key = records.message_key(sender.ods, checked.message_id)
    # one search answers both "was this very message stored before?" (a resend Redis forgot)
    # and "is this prescription id taken?"
    earlier = as_prescriber.search(
        "Task",
        [
            (
                "identifier",
                f"{records.MESSAGE_KEY_SYSTEM}|{key},{records.PRESCRIPTION_ID_SYSTEM}|{checked.short_id}",
            )
        ],
        count=2,
    )
    same_message = [t for t in earlier if records.identifier_of(t, records.MESSAGE_KEY_SYSTEM) == key]
    if same_message:
        if records.identifier_of(same_message[0], records.MESSAGE_DIGEST_SYSTEM) != messaging.digest(message):
            raise FhirError(
                409, "This message id was already used for a message with other content", ["Bundle.id"]
            )
        return EventResult(replayed=True)  # stored before: the original answer, nothing new
    if earlier:
        raise CodedRefusal(
            400,
            f"A prescription with the id {checked.short_id} has already been received",
            ["MedicationRequest.groupIdentifier.value"],
            "duplicate",
            {"system": SPINE_CODES, "code": "DUPLICATE_PRESCRIPTION", "display": "Duplicate prescription ID"},
        )
    bundle = transaction(message, sender, checked, now)
    status, answer = as_prescriber.transaction(bundle)
    if status >= 400:
        raise FhirError(
            400 if status < 500 else 503,
            f"The store refused the prescription ({status}): {_diagnostics(answer)}",
            ["Bundle"],
            code="processing",
        )
    return EventResult()


def transaction(message: dict, sender: Sender, checked: Checked, now: datetime) -> dict[str, Any]:
    """The prescription's store transaction, with its "received" AuditEvent."""
    bundle = records.prescription_transaction(
        message,
        short_id=checked.short_id,
        message_key_value=records.message_key(sender.ods, checked.message_id),
        nhs_number=checked.nhs_number,
        authored_on=checked.authored_on,
        prescriber_ods=sender.ods,
        nominated_ods=checked.nominated_ods,
        message_digest=messaging.digest(message),
    )
    task_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Task")
    event = audit.lifecycle_event(
        "received",
        sender,
        task_entry["fullUrl"],
        now=now,
        labels=records.tenant_labels(sender.ods, checked.nominated_ods),
        short_form_id=checked.short_id,
        message_id=checked.message_id,
    )
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": event,
            "request": {"method": "POST", "url": "AuditEvent"},
        }
    )
    return bundle


def check(
    message: dict, sender: Sender, now: datetime, trust_anchors: Sequence[x509.Certificate] | None
) -> Checked:
    """Every check before storing (steps 1-4 above); the first failure raises."""
    request = messaging.read(message)
    parsed = Message(message)
    requests = parsed.of_type("MedicationRequest")
    _check_check_character(requests)
    fragments, author_time = signed_parts(message)  # EPS's own checks, and what was signed
    _check_items(requests)
    nominated = _nominated_pharmacy(requests)
    _check_sender(parsed, request.header, requests[0], sender)
    verify_bundle_signature(message, now=now, trust_anchors=trust_anchors, fragments=lambda _: fragments)
    authored_on = requests[0].get("authoredOn")
    return Checked(
        message_id=request.message_id,
        short_id=requests[0]["groupIdentifier"]["value"],
        nhs_number=nhs_number(parsed.one_of_type("Patient")),
        authored_on=authored_on if isinstance(authored_on, str) else author_time,
        nominated_ods=nominated,
    )


def _check_check_character(requests: list[dict]) -> None:
    for request in requests:
        group = request.get("groupIdentifier")
        value = group.get("value") if isinstance(group, dict) else None
        if isinstance(value, str) and not short_form_id_valid(value):
            raise CodedRefusal(
                400,
                f"Invalid prescription short-form id '{value}': prescriptionID has invalid checksum",
                ["MedicationRequest.groupIdentifier.value"],
                "processing",
                {
                    "system": SPINE_CODES,
                    "code": "FAILURE_TO_PROCESS_MESSAGE",
                    "display": "Unable to process message. Information missing or invalid - "
                    "prescriptionID has invalid checksum",
                },
            )


def _check_items(requests: list[dict]) -> None:
    if any(r.get("status") != "active" for r in requests):
        raise FhirError(400, "MedicationRequest.status must be active.", [f"{MR}.status"], code="value")
    if any(r.get("intent") not in ALLOWED_INTENTS for r in requests):
        raise FhirError(
            400,
            "MedicationRequest.intent must be order, original-order or instance-order.",
            [f"{MR}.intent"],
            code="value",
        )
    ids = [
        i.get("value")
        for r in requests
        for i in r.get("identifier") or []
        if isinstance(i, dict) and i.get("system") == records.LINE_ITEM_SYSTEM
    ]
    if len(ids) != len(set(ids)):
        raise FhirError(
            400, "Expected all MedicationRequests to have a different identifier.", [f"{MR}.identifier"]
        )


def _nominated_pharmacy(requests: list[dict]) -> str | None:
    performers = []
    for request in requests:
        performer = (request.get("dispenseRequest") or {}).get("performer")
        if performer not in performers:
            performers.append(performer)
    if len(performers) > 1:
        raise FhirError(
            400,
            "Expected all MedicationRequests to have the same value for dispenseRequest.performer.",
            [f"{MR}.dispenseRequest.performer"],
        )
    performer = performers[0]
    if performer is None:
        return None
    identifier = performer.get("identifier") if isinstance(performer, dict) else None
    value = identifier.get("value") if isinstance(identifier, dict) else None
    if (
        not isinstance(identifier, dict)
        or identifier.get("system") != ODS_SYSTEM
        or not isinstance(value, str)
    ):
        raise FhirError(
            400,
            "The nominated pharmacy must be named by its ODS code",
            [f"{MR}.dispenseRequest.performer.identifier"],
        )
    return value


def _ods_of(identifiers: object) -> str | None:
    for identifier in identifiers if isinstance(identifiers, list) else [identifiers]:
        if isinstance(identifier, dict) and identifier.get("system") == ODS_SYSTEM:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _check_sender(message: Message, header: dict, first: dict, sender: Sender) -> None:
    role = message.resolve(first.get("requester"), "MedicationRequest.requester", "PractitionerRole")
    organisation = message.resolve(role.get("organization"), "PractitionerRole.organization", "Organization")
    part_of = organisation.get("partOf")
    parent = part_of.get("identifier") if isinstance(part_of, dict) else None
    prescribing = {_ods_of(organisation.get("identifier")), _ods_of(parent)} - {None}
    if sender.ods not in prescribing:
        raise FhirError(
            403,
            f"The prescription is from {' / '.join(sorted(c for c in prescribing if c))}, "
            f"not from this client's organisation {sender.ods}",
            ["PractitionerRole.organization"],
            code="forbidden",
        )
    named = (header.get("sender") or {}).get("identifier") if isinstance(header.get("sender"), dict) else None
    if isinstance(named, dict) and named.get("system") == ODS_SYSTEM and named.get("value") != sender.ods:
        raise FhirError(
            403,
            f"MessageHeader.sender names {named.get('value')}, not this client's organisation {sender.ods}",
            ["MessageHeader.sender.identifier.value"],
            code="forbidden",
        )


def _diagnostics(answer: dict | None) -> str:
    issues = (answer or {}).get("issue") if isinstance(answer, dict) else None
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        return str(issues[0].get("diagnostics") or "no reason given")
    return "no reason given"
