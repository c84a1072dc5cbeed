"""How the EPS broker keeps a prescription in the store: one shape every EPS step reads and writes.

A prescription-order message is stored whole and in parts, in ONE store transaction (nothing
half-written):

- the message ``Bundle`` itself (``type: message``, as the prescriber signed and sent it): what a
  pharmacy receives when it releases the prescription;
- its MedicationRequests, Patient, Practitioner, PractitionerRole and Organizations as resources
  of their own, so the standard FHIR searches of a prescription tracker work on them;
- one **tracking Task** per prescription: the prescription's place in its lifecycle. EPS keeps
  this state in Spine; we keep it in a Task, because a Task is what FHIR has for "work on a
  request, with a business status", and because HAPI's optimistic locking on it (``If-Match``)
  makes a release an atomic compare-and-set that holds across any number of proxy processes.

The tracking Task:

    identifier      [prescription short-form id (PRESCRIPTION_ID_SYSTEM),
                     message key "<sender ODS>/<message id>" (MESSAGE_KEY_SYSTEM),
                     optionally the message's content hash (MESSAGE_DIGEST_SYSTEM),
                     while in a pharmacy's release queue: its ODS code (RELEASE_QUEUE_SYSTEM)]
    groupIdentifier the short-form id
    status          mirrors the business status (STATUS_OF below)
    businessStatus  EPS-task-business-status (0001 to be dispensed, 0002 with dispenser, ...)
    code            task-code ``fulfill``
    focus           the stored message Bundle
    for             the patient, by NHS Number
    authoredOn      the prescription's authoredOn: releases hand out the oldest first
    requester       the prescriber's organisation (ODS)
    owner           the nominated pharmacy until released; then the pharmacy it is with
    input           one per MedicationRequest ("MedicationRequest/<id>")
    meta.tag        TRACKING_TAG, so a tracking Task is never mistaken for a hub-and-spoke Task
    meta.security   tenant labels: the prescriber's ODS, the nominated pharmacy's, and the
                    dispensing pharmacy's once released (labels are only ever added)

Every resource of a prescription carries the same tenant labels, so the store's own tenancy line
shows a prescriber its prescriptions and a pharmacy what is nominated to or released to it.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from eps._fhir import json_copy
from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM, TENANT_SYSTEM

PRESCRIPTION_ID_SYSTEM = "https://fhir.nhs.uk/Id/prescription-order-number"
LINE_ITEM_SYSTEM = "https://fhir.nhs.uk/Id/prescription-order-item-number"
BUSINESS_STATUS_SYSTEM = "https://fhir.nhs.uk/CodeSystem/EPS-task-business-status"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
# "<sender ODS>/<message id>": a resubmitted message is found by it even when Redis forgot it
MESSAGE_KEY_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/eps-message"
# the message's content hash: a resend with other content under the same id is told apart, also
# when Redis forgot the first copy
MESSAGE_DIGEST_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/eps-message-digest"
# On a tracking Task while it waits in a pharmacy's nominated queue (to be dispensed, owned by
# that pharmacy), and only then: the queue is one selective identifier search. The same question
# asked with owner, business status and tag parameters made the store join three large indexes
# (about 100 ms on H2 against 15 ms).
RELEASE_QUEUE_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/eps-release-queue"
TRACKING_TAG = {"system": "https://fhirplug.org/fhir/CodeSystem/eps", "code": "prescription"}
STORED_TYPES = ("MedicationRequest", "Patient", "Practitioner", "PractitionerRole", "Organization")


class BusinessStatus(enum.Enum):
    """EPS's prescription statuses (EPS-task-business-status), those the broker moves through."""

    TO_BE_DISPENSED = "0001"
    WITH_DISPENSER = "0002"
    WITH_DISPENSER_ACTIVE = "0003"
    EXPIRED = "0004"
    CANCELLED = "0005"
    DISPENSED = "0006"
    NOT_DISPENSED = "0007"

    @property
    def display(self) -> str:
        return _DISPLAY[self]

    def coding(self) -> dict[str, str]:
        return {"system": BUSINESS_STATUS_SYSTEM, "code": self.value, "display": self.display}


_DISPLAY = {
    BusinessStatus.TO_BE_DISPENSED: "To Be Dispensed",
    BusinessStatus.WITH_DISPENSER: "With Dispenser",
    BusinessStatus.WITH_DISPENSER_ACTIVE: "With Dispenser - Active",
    BusinessStatus.EXPIRED: "Expired",
    BusinessStatus.CANCELLED: "Cancelled",
    BusinessStatus.DISPENSED: "Dispensed",
    BusinessStatus.NOT_DISPENSED: "Not Dispensed",
}

# the Task.status that says the same as each business status, for clients that read only FHIR
STATUS_OF = {
    BusinessStatus.TO_BE_DISPENSED: "requested",
    BusinessStatus.WITH_DISPENSER: "accepted",
    BusinessStatus.WITH_DISPENSER_ACTIVE: "in-progress",
    BusinessStatus.EXPIRED: "cancelled",
    BusinessStatus.CANCELLED: "cancelled",
    BusinessStatus.DISPENSED: "completed",
    BusinessStatus.NOT_DISPENSED: "completed",
}


def ods_identifier(ods: str) -> dict[str, dict[str, str]]:
    return {"identifier": {"system": ODS_SYSTEM, "value": ods}}


def tenant_labels(*ods: str | None) -> list[dict[str, str]]:
    return [{"system": TENANT_SYSTEM, "code": code} for code in sorted({o for o in ods if o})]


def labelled(resource: dict[str, Any], labels: list[dict[str, str]]) -> dict[str, Any]:
    """``resource`` with exactly these tenant labels (other security labels kept)."""
    meta = resource.setdefault("meta", {})
    others = [s for s in meta.get("security") or [] if s.get("system") != TENANT_SYSTEM]
    meta["security"] = others + json_copy(labels)
    return resource


def business_status(task: dict[str, Any]) -> BusinessStatus | None:
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("system") == BUSINESS_STATUS_SYSTEM:
            try:
                return BusinessStatus(coding.get("code"))
            except ValueError:
                return None
    return None


def with_status(task: dict[str, Any], status: BusinessStatus, owner: str | None = None) -> dict[str, Any]:
    """A copy of the tracking Task moved to ``status`` (and to ``owner``'s pharmacy when given),
    the owner's tenant label added: who held a prescription may still see it afterwards."""
    moved = json_copy(task)
    moved["businessStatus"] = {"coding": [status.coding()]}
    moved["status"] = STATUS_OF[status]
    if owner:
        moved["owner"] = ods_identifier(owner)
        labels = [
            s for s in (moved.get("meta") or {}).get("security") or [] if s.get("system") == TENANT_SYSTEM
        ]
        labelled(moved, tenant_labels(owner, *(s.get("code") for s in labels)))
    return with_queue_mark(moved)


def with_tenant(resource: dict[str, Any], ods: str) -> dict[str, Any]:
    """A copy of ``resource`` with ``ods``'s tenant label added (labels are only ever added): a
    part of a prescription released to a pharmacy that was not nominated for it."""
    copied = json_copy(resource)
    codes = [
        s.get("code")
        for s in (copied.get("meta") or {}).get("security") or []
        if s.get("system") == TENANT_SYSTEM
    ]
    return labelled(copied, tenant_labels(ods, *codes))


def short_form_id(task: dict[str, Any]) -> str | None:
    value = (task.get("groupIdentifier") or {}).get("value")
    return value if isinstance(value, str) else None


def owner_ods(task: dict[str, Any]) -> str | None:
    value = ((task.get("owner") or {}).get("identifier") or {}).get("value")
    return value if isinstance(value, str) else None


def message_key(sender_ods: str, message_id: str) -> str:
    return f"{sender_ods}/{message_id}"


def identifier_of(task: dict[str, Any], system: str) -> str | None:
    """The value of the tracking Task's identifier in ``system`` (message key, digest, id)."""
    for identifier in task.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == system:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def tracking_task(
    *,
    short_id: str,
    message_key_value: str,
    message_ref: str,
    nhs_number: str,
    authored_on: str,
    prescriber_ods: str,
    nominated_ods: str | None,
    medication_request_refs: list[str],
    labels: list[dict[str, str]],
    message_digest: str | None = None,
) -> dict[str, Any]:
    """A new prescription's tracking Task: to be dispensed, owned by its nominated pharmacy."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"tag": [dict(TRACKING_TAG)]},
        "identifier": [
            {"system": PRESCRIPTION_ID_SYSTEM, "value": short_id},
            {"system": MESSAGE_KEY_SYSTEM, "value": message_key_value},
        ],
        "groupIdentifier": {"system": PRESCRIPTION_ID_SYSTEM, "value": short_id},
        "status": STATUS_OF[BusinessStatus.TO_BE_DISPENSED],
        "businessStatus": {"coding": [BusinessStatus.TO_BE_DISPENSED.coding()]},
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "fulfill"}]},
        "focus": {"reference": message_ref},
        "for": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs_number}},
        "authoredOn": authored_on,
        "requester": ods_identifier(prescriber_ods),
        "input": [
            {"type": {"text": "MedicationRequest"}, "valueReference": {"reference": ref}}
            for ref in medication_request_refs
        ],
    }
    if message_digest:
        task["identifier"].append({"system": MESSAGE_DIGEST_SYSTEM, "value": message_digest})
    if nominated_ods:
        task["owner"] = ods_identifier(nominated_ods)
    return labelled(with_queue_mark(task), labels)


def with_queue_mark(task: dict[str, Any]) -> dict[str, Any]:
    """``task`` with its release-queue identifier as its state says: the owner's ODS code while
    it is to be dispensed, none otherwise (set on every change of state, see ``with_status``)."""
    marks = [i for i in task.get("identifier") or [] if i.get("system") != RELEASE_QUEUE_SYSTEM]
    owner = owner_ods(task)
    if owner and business_status(task) is BusinessStatus.TO_BE_DISPENSED:
        marks.append({"system": RELEASE_QUEUE_SYSTEM, "value": owner})
    task["identifier"] = marks
    return task


def prescription_transaction(
    message: dict[str, Any],
    *,
    short_id: str,
    message_key_value: str,
    nhs_number: str,
    authored_on: str,
    prescriber_ods: str,
    nominated_ods: str | None,
    message_digest: str | None = None,
) -> dict[str, Any]:
    """The one store transaction that keeps a checked prescription-order message: the message
    Bundle, its resources, and the tracking Task, all with the same tenant labels.

    ``message`` must already be checked (the caller validated and verified it). Entries keep the
    message's ``urn:uuid`` fullUrls, so the store resolves the references between them.
    """
    labels = tenant_labels(prescriber_ods, nominated_ods)
    entries: list[dict[str, Any]] = []
    message_url = f"urn:uuid:{uuid.uuid4()}"
    stored_message = labelled(json_copy(message), labels)
    stored_message.pop("id", None)  # the store names it; the message id stays in identifier
    stored_message["meta"].setdefault("tag", []).append(dict(TRACKING_TAG))
    entries.append(
        {"fullUrl": message_url, "resource": stored_message, "request": {"method": "POST", "url": "Bundle"}}
    )
    # The parts get fullUrls of their own: HAPI rewrites every fullUrl of the transaction it
    # finds, also inside the stored message Bundle, which must stay exactly as it was signed.
    renamed = {
        entry["fullUrl"]: f"urn:uuid:{uuid.uuid4()}"
        for entry in message.get("entry") or []
        if isinstance(entry.get("fullUrl"), str)
        and (entry.get("resource") or {}).get("resourceType") in STORED_TYPES
    }
    medication_request_refs: list[str] = []
    for entry in message.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") not in STORED_TYPES:
            continue
        full_url = renamed.get(entry.get("fullUrl"), f"urn:uuid:{uuid.uuid4()}")
        if resource["resourceType"] == "MedicationRequest":
            medication_request_refs.append(full_url)
        stored = labelled(_renamed_references(json_copy(resource), renamed), labels)
        stored.pop("id", None)
        entries.append(
            {
                "fullUrl": full_url,
                "resource": stored,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    task = tracking_task(
        short_id=short_id,
        message_key_value=message_key_value,
        message_ref=message_url,
        nhs_number=nhs_number,
        authored_on=authored_on,
        prescriber_ods=prescriber_ods,
        nominated_ods=nominated_ods,
        medication_request_refs=medication_request_refs,
        labels=labels,
        message_digest=message_digest,
    )
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": task,
            "request": {"method": "POST", "url": "Task"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _renamed_references(value: Any, renamed: dict[str, str]) -> Any:
    """``value`` with every ``reference`` that names a renamed fullUrl pointing at its new name."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item in renamed:
                value[key] = renamed[item]
            else:
                _renamed_references(item, renamed)
    elif isinstance(value, list):
        for item in value:
            _renamed_references(item, renamed)
    return value
