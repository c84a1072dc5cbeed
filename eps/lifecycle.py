"""What every step after a prescription is stored shares: finding it as the caller, its line
items' dispensing statuses, EPS's refusals, the audit record, and the one guarded transaction.

Every step (cancel, dispense-notification, return, withdraw) is a compare-and-set on the
prescription's tracking Task: the step reads the Task and the line items it changes, and writes
them back in ONE store transaction whose entries carry ``ifMatch`` on the versions read. The Task
is always among them (its ``lastModified`` moves), so two steps racing on one prescription never
both succeed, whichever resources each touches: the loser's transaction is refused whole (409 or
412 from the store) and nothing of it is stored. The step's AuditEvent is one more entry of the
same transaction, so it exists exactly when the step happened.

Everything is done through the store *as the caller* (``store.as_caller(role, ods)``): the
store's own tenancy line decides what a prescriber or a pharmacy may see and change, so a
prescription that is not theirs is simply not found.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eps import audit
from eps.events import EpsStore, Sender
from eps.records import (
    LINE_ITEM_SYSTEM,
    MESSAGE_KEY_SYSTEM,
    PRESCRIPTION_ID_SYSTEM,
    TRACKING_TAG,
    BusinessStatus,
    with_status,
)
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from proxy.errors import FhirError

# a line item's dispensing status, as EPS writes it on the MedicationRequests it releases
DISPENSING_INFORMATION_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-EPS-DispensingInformation"
DISPENSE_TYPE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/medicationdispense-type"
ITEM_DISPLAY = {
    "0001": "Item fully dispensed",
    "0002": "Item not dispensed",
    "0003": "Item dispensed - partial",
    "0004": "Item not dispensed owing",
    "0005": "Item cancelled",
    "0006": "Expired",
    "0007": "Item to be dispensed",
    "0008": "Item with dispenser",
}
FULLY_DISPENSED, CANCELLED_ITEM = "0001", "0005"
TO_BE_DISPENSED_ITEM, WITH_DISPENSER_ITEM = "0007", "0008"
# an item in one of these has reached its end: nothing more is dispensed against it
FINAL_ITEM_STATUSES = frozenset({"0001", "0002", "0005", "0006"})
# the MedicationRequest.status that says the same as each item status (EPS's release translation)
REQUEST_STATUS_OF_ITEM = {
    "0001": "completed",
    "0002": "stopped",
    "0006": "stopped",
    "0005": "cancelled",
    "0003": "active",
    "0004": "active",
    "0007": "active",
    "0008": "active",
}
# each accepted dispense notification is one Task.output naming it, and its MedicationDispenses
# carry the same identifier: the last output is what a withdrawal takes back
NOTIFICATION_SYSTEM = "https://fhirplug.org/fhir/NamingSystem/eps-dispense-notification"
NOTIFICATION_OUTPUT = {"text": "dispense-notification"}
EPS_ISSUE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/EPS-IssueCode"
SPINE_ISSUE_SYSTEM = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode"


class Conflict(FhirError):
    """The prescription changed between our read and our write; nothing was stored: retry."""

    def __init__(self, short_id: str):
        super().__init__(
            409,
            f"Prescription {short_id} changed while this request was processed; nothing was stored, "
            "send it again",
            code="conflict",
        )


@dataclass
class Refusal(FhirError):
    """A refusal as EPS words it: its issue code in ``details``, its display as the diagnostics."""

    details: dict[str, Any] = field(default_factory=dict)

    def to_resource(self) -> dict:
        outcome = super().to_resource()
        if self.details:
            outcome["issue"][0]["details"] = copy.deepcopy(self.details)
        return outcome


def refusal(
    status: int, code: str, display: str, *, system: str = EPS_ISSUE_SYSTEM, issue: str = "business-rule"
) -> Refusal:
    details = {"coding": [{"system": system, "code": code, "display": display}]}
    return Refusal(status, display, code=issue, details=details)


def informational(details: dict[str, Any] | None = None) -> dict[str, Any]:
    """EPS's answer to a step that was done: one informational issue."""
    issue: dict[str, Any] = {"severity": "information", "code": "informational"}
    if details:
        issue["details"] = details
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def not_found() -> FhirError:
    """One answer for "no such prescription" and "not yours": no oracle for others' prescriptions."""
    return refusal(
        404, "RESOURCE_NOT_FOUND", "Resource not found", system=SPINE_ISSUE_SYSTEM, issue="not-found"
    )


# EPS's dispense-side refusals by the business status that causes them (Spine's codes, as the
# coordinator's spine-response-handler words them)
STATE_REFUSALS = {
    BusinessStatus.CANCELLED: ("PRESCRIPTION_CANCELLED", "Prescription has been cancelled"),
    BusinessStatus.EXPIRED: ("PRESCRIPTION_EXPIRED", "Prescription has expired"),
    BusinessStatus.DISPENSED: ("PRESCRIPTION_DISPENSED", "Prescription has been dispensed"),
}
INVALID_TRANSITION = ("PRESCRIPTION_INVALID_STATE_TRANSITION", "Invalid State Transition for Prescription")
ITEM_NOT_FOUND = ("MEDICATIONREQUEST_NOT_FOUND", "Prescription Item Not found")
ITEM_INVALID_TRANSITION = (
    "MEDICATIONREQUEST_INVALID_STATE_TRANSITION",
    "Invalid State Transition for Prescription Item",
)
WITH_ANOTHER_DISPENSER = ("PRESCRIPTION_WITH_ANOTHER_DISPENSER", "Prescription is with another dispenser")


def state_refusal(status: BusinessStatus | None) -> FhirError:
    code, display = STATE_REFUSALS.get(status, INVALID_TRANSITION) if status else INVALID_TRANSITION
    return refusal(422, code, display)


@dataclass
class Prescription:
    """A stored prescription as one caller sees it: its tracking Task and line items."""

    task: dict[str, Any]
    items: list[dict[str, Any]]  # its MedicationRequests, in the Task's input order

    @property
    def short_id(self) -> str:
        return str((self.task.get("groupIdentifier") or {}).get("value"))

    @property
    def task_ref(self) -> str:
        return f"Task/{self.task['id']}"

    def item(self, line_item_id: str) -> dict[str, Any] | None:
        wanted = line_item_id.lower()
        for request in self.items:
            if any(
                i.get("system") == LINE_ITEM_SYSTEM and str(i.get("value", "")).lower() == wanted
                for i in request.get("identifier") or []
            ):
                return request
        return None

    def labels(self) -> list[dict[str, str]]:
        security = (self.task.get("meta") or {}).get("security") or []
        return [dict(s) for s in security if s.get("system") == TENANT_SYSTEM]

    def nominated_ods(self) -> str | None:
        for request in self.items:
            performer = (request.get("dispenseRequest") or {}).get("performer") or {}
            identifier = performer.get("identifier") or {}
            if identifier.get("system") == ODS_SYSTEM and isinstance(identifier.get("value"), str):
                return identifier["value"]
        return None

    def notifications(self) -> list[str]:
        """The dispense notifications in effect, oldest first."""
        return [
            str((o.get("valueIdentifier") or {}).get("value"))
            for o in self.task.get("output") or []
            if (o.get("valueIdentifier") or {}).get("system") == NOTIFICATION_SYSTEM
        ]


def find(store: EpsStore, short_id: str) -> Prescription | None:
    """The prescription with short-form id ``short_id`` as ``store``'s caller sees it, or None."""
    tasks = store.search(
        "Task",
        [
            ("identifier", f"{PRESCRIPTION_ID_SYSTEM}|{short_id}"),
            ("_tag", f"{TRACKING_TAG['system']}|{TRACKING_TAG['code']}"),
        ],
        count=2,
    )
    if len(tasks) != 1:
        return None  # none (or, never made by records, two: judge nothing on an ambiguity)
    task = tasks[0]
    ids = [
        ref.split("/", 1)[1]
        for i in task.get("input") or []
        if isinstance(ref := (i.get("valueReference") or {}).get("reference"), str)
        and ref.startswith("MedicationRequest/")
    ]
    found = store.search("MedicationRequest", [("_id", ",".join(ids))], count=max(len(ids), 1)) if ids else []
    by_id = {r.get("id"): r for r in found}
    return Prescription(task, [by_id[i] for i in ids if i in by_id])


def names_the_order(store: EpsStore, prescription: Prescription, quoted: str) -> bool:
    """Whether ``quoted`` names the prescription-order message: its ``identifier`` or its
    ``Bundle.id`` (the message id ``$process-message`` keyed it by). True when neither is known.

    EPS's own pharmacies quote the id of the release that handed the prescription out (its
    examples' ``a5d77265-...`` is the release response's id); this broker's release answers with
    the prescription-order messages themselves, so theirs is the id a pharmacy holds."""
    known = set()
    ref = (prescription.task.get("focus") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Bundle/"):
        message = store.read("Bundle", ref.split("/", 1)[1]) or {}
        known.add((message.get("identifier") or {}).get("value"))
    for identifier in prescription.task.get("identifier") or []:
        if identifier.get("system") == MESSAGE_KEY_SYSTEM and isinstance(identifier.get("value"), str):
            known.add(identifier["value"].split("/", 1)[-1])
    known = {str(k).lower() for k in known if isinstance(k, str) and k}
    return not known or quoted.lower() in known


def same_id(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower() == str(b).lower()


def item_status(request: dict[str, Any]) -> str | None:
    for ext in request.get("extension") or []:
        if ext.get("url") != DISPENSING_INFORMATION_URL:
            continue
        for sub in ext.get("extension") or []:
            if sub.get("url") == "dispenseStatus":
                return (sub.get("valueCoding") or {}).get("code")
    return None


def with_item_status(request: dict[str, Any], code: str) -> dict[str, Any]:
    """A copy of the line item at dispensing status ``code``, its FHIR status following."""
    moved = copy.deepcopy(request)
    coding = {"system": DISPENSE_TYPE_SYSTEM, "code": code, "display": ITEM_DISPLAY.get(code, code)}
    info = {
        "url": DISPENSING_INFORMATION_URL,
        "extension": [{"url": "dispenseStatus", "valueCoding": coding}],
    }
    others = [e for e in moved.get("extension") or [] if e.get("url") != DISPENSING_INFORMATION_URL]
    moved["extension"] = [*others, info]
    moved["status"] = REQUEST_STATUS_OF_ITEM.get(code, moved.get("status"))
    return moved


def prescription_status(item_codes: list[str], dispensed_before: bool) -> BusinessStatus:
    """What the prescription's status is when its items stand at ``item_codes``."""
    if item_codes and all(c in FINAL_ITEM_STATUSES for c in item_codes):
        return BusinessStatus.DISPENSED if FULLY_DISPENSED in item_codes else BusinessStatus.NOT_DISPENSED
    return BusinessStatus.WITH_DISPENSER_ACTIVE if dispensed_before else BusinessStatus.WITH_DISPENSER


def moved_task(
    task: dict[str, Any], status: BusinessStatus, now: datetime, owner: str | None = None
) -> dict[str, Any]:
    moved = with_status(task, status, owner=owner)
    moved["lastModified"] = iso(now)
    return moved


def iso(now: datetime) -> str:
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_event(
    step: str,
    sender: Sender,
    prescription: Prescription,
    now: datetime,
    reason: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one lifecycle step (``eps.audit``'s shape, as every step's): who (the OAuth
    client and its organisation), on which prescription, and why (``purposeOfEvent``: the reason
    given, if any); labelled like the prescription, so those who see it see its history."""
    event = audit.lifecycle_event(
        step,
        sender,
        prescription.task_ref,
        now=now,
        labels=prescription.labels(),
        short_form_id=prescription.short_id,
    )
    if reason:
        event["purposeOfEvent"] = [reason]
    return event


def update_entry(resource: dict[str, Any], version: str | None) -> dict[str, Any]:
    """A transaction entry writing ``resource`` back only if it is still at ``version``."""
    body = copy.deepcopy(resource)
    meta = body.get("meta") or {}
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    url = f"{body['resourceType']}/{body['id']}"
    request: dict[str, Any] = {"method": "PUT", "url": url}
    if version is not None:
        request["ifMatch"] = f'W/"{version}"'
    return {"fullUrl": url, "resource": body, "request": request}


def version_of(resource: dict[str, Any]) -> str | None:
    value = (resource.get("meta") or {}).get("versionId")
    return str(value) if value is not None else None


def create_entry(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def commit(store: EpsStore, short_id: str, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Send the step's entries as one transaction: all of it is stored, or none of it."""
    status, body = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if status in (409, 412):
        raise Conflict(short_id)
    if status >= 300:
        # our own change refused (a label the store would not take, a reference it could not
        # resolve): nothing was stored, and the caller can do nothing about it
        raise FhirError.unavailable(
            f"The FHIR store refused the change to prescription {short_id} ({status})"
        )
    return body
