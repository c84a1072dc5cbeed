"""``prescription-order-update``: a prescriber cancels a line item of a prescription it sent.

The message carries exactly one MedicationRequest, at status ``cancelled`` with a
``statusReason``, naming the prescription by its short-form id (``groupIdentifier``) and the line
item by its identifier. The prescription is looked for through the store *as the prescriber*, so
another organisation's prescription is "not found", exactly like one that does not exist.

The cancellation is made only while the prescription is still to be dispensed: the line item's
MedicationRequest becomes ``cancelled`` (the prescriber's ``statusReason`` kept), and when every
line item is cancelled the tracking Task becomes CANCELLED. Otherwise it is refused with EPS's
own reasons, which are Spine's cancellation response codes as EPS's coordinator translates them
(``translation/response/cancellation/cancellation-medication-request.ts``, system
``medicationrequest-status-history``): R-0002 with dispenser, R-0003 with dispenser - active, R-0004
dispensed, R-0005 expired, R-0006 already cancelled, R-0008 not found, R-0010 not dispensed.

Where Spine answers R-0002/R-0003 "... Marked for cancellation" and cancels once the pharmacy
gives the prescription back, this broker refuses and marks nothing (the wording drops that
sentence): the prescriber asks the pharmacy, and cancels again once it is returned.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eps import lifecycle as lc
from eps.events import EpsStore, EventResult, Sender
from eps.records import LINE_ITEM_SYSTEM, BusinessStatus, business_status, owner_ods
from proxy.errors import FhirError

EVENT = "prescription-order-update"
STATUS_HISTORY_SYSTEM = "https://fhir.nhs.uk/CodeSystem/medicationrequest-status-history"
CANCELLED = ("R-0001", "Prescription/item was cancelled")
NOT_FOUND = ("R-0008", "Prescription/item not found")
ALREADY_CANCELLED = ("R-0006", "Prescription/item had already been cancelled")
# what stands in the way of a cancellation, by the prescription's business status
REFUSED_WHEN = {
    BusinessStatus.WITH_DISPENSER: ("R-0002", "Prescription/item was not cancelled. With dispenser."),
    BusinessStatus.WITH_DISPENSER_ACTIVE: (
        "R-0003",
        "Prescription/item was not cancelled. With dispenser active.",
    ),
    BusinessStatus.DISPENSED: (
        "R-0004",
        "Prescription/item was not cancelled. Prescription has been dispensed.",
    ),
    BusinessStatus.EXPIRED: ("R-0005", "Prescription/item has expired"),
    BusinessStatus.CANCELLED: ALREADY_CANCELLED,
    BusinessStatus.NOT_DISPENSED: (
        "R-0010",
        "Prescription/item was not cancelled. Prescription has been not dispensed.",
    ),
}
CALLERS = frozenset({"prescriber"})
_MR = "Bundle.entry.resource.ofType(MedicationRequest)"


def handle(message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult:
    """The ``prescription-order-update`` handler for the ``$process-message`` dispatcher."""
    if sender.role not in CALLERS:
        raise FhirError(403, f"{EVENT} is for prescribing systems (role prescriber)", code="forbidden")
    request = _cancellation_request(message)
    short_id, line_item = _names(request)
    try:
        return cancel(store.as_caller(sender.role, sender.ods), sender, short_id, line_item, request, now)
    except lc.Conflict as exc:
        return EventResult(exc.to_resource(), "transient-error", 503)
    except lc.Refusal as exc:
        return EventResult(exc.to_resource(), "fatal-error", exc.status)


def cancel(
    store: EpsStore, sender: Sender, short_id: str, line_item: str, request: dict[str, Any], now: datetime
) -> EventResult:
    prescription = lc.find(store, short_id)
    if prescription is None or _requester(prescription.task) != sender.ods:
        raise _refused(404, NOT_FOUND, "not-found")
    item = prescription.item(line_item)
    if item is None:
        raise _refused(404, NOT_FOUND, "not-found")
    status = business_status(prescription.task)
    if item.get("status") == "cancelled":
        raise _refused(422, ALREADY_CANCELLED)
    if status is not BusinessStatus.TO_BE_DISPENSED:
        raise _refused(422, REFUSED_WHEN.get(status, NOT_FOUND) if status else NOT_FOUND)

    cancelled = lc.with_item_status(item, lc.CANCELLED_ITEM)
    cancelled["statusReason"] = request["statusReason"]
    rest = [r for r in prescription.items if r.get("id") != item.get("id")]
    every_item = all(r.get("status") == "cancelled" for r in rest)
    task = lc.moved_task(
        prescription.task,
        BusinessStatus.CANCELLED if every_item else BusinessStatus.TO_BE_DISPENSED,
        now,
        owner=owner_ods(prescription.task),
    )
    event = lc.audit_event("cancelled", sender, prescription, now, request["statusReason"])
    lc.commit(
        store,
        short_id,
        [
            lc.update_entry(cancelled, lc.version_of(item)),
            lc.update_entry(task, lc.version_of(prescription.task)),
            lc.create_entry(event, f"urn:uuid:{uuid.uuid4()}"),
        ],
    )
    return EventResult(lc.informational(_details(CANCELLED)))


def _cancellation_request(message: dict) -> dict[str, Any]:
    """The one MedicationRequest, checked as EPS checks a cancellation (its wording)."""
    requests: list[dict[str, Any]] = [
        e["resource"]
        for e in message.get("entry") or []
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "MedicationRequest"
    ]
    problems: list[tuple[str, list[str]]] = []
    if len(requests) != 1:
        problems.append(
            (
                "The Bundle must contain exactly one MedicationRequest if MessageHeader.eventCoding.code "
                f"is '{EVENT}'.",
                [_MR],
            )
        )
    if any(r.get("status") != "cancelled" for r in requests):
        problems.append(("MedicationRequest.status must be cancelled.", [f"{_MR}.status"]))
    if any(not isinstance(r.get("statusReason"), dict) for r in requests):
        problems.append(
            ("Expected MedicationRequest to have a value for statusReason.", [f"{_MR}.statusReason"])
        )
    if problems:
        raise FhirError.many(400, problems, code="value")
    return requests[0]


def _names(request: dict[str, Any]) -> tuple[str, str]:
    """The prescription's short-form id and the line item's identifier."""
    group = request.get("groupIdentifier")
    short_id = group.get("value") if isinstance(group, dict) else None
    line_item = next(
        (
            i.get("value")
            for i in request.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == LINE_ITEM_SYSTEM
        ),
        None,
    )
    problems: list[tuple[str, list[str]]] = []
    if not isinstance(short_id, str) or not short_id:
        problems.append(
            (
                "Expected MedicationRequest to have a value for groupIdentifier.",
                [f"{_MR}.groupIdentifier.value"],
            )
        )
    if not isinstance(line_item, str) or not line_item:
        problems.append(
            (
                f"Expected MedicationRequest to have a value for identifier (system {LINE_ITEM_SYSTEM}).",
                [f"{_MR}.identifier"],
            )
        )
    if problems:
        raise FhirError.many(400, problems, code="value")
    return str(short_id), str(line_item)


def _requester(task: dict[str, Any]) -> str | None:
    value = ((task.get("requester") or {}).get("identifier") or {}).get("value")
    return value if isinstance(value, str) else None


def _details(answer: tuple[str, str]) -> dict[str, Any]:
    code, display = answer
    return {"coding": [{"system": STATUS_HISTORY_SYSTEM, "code": code, "display": display}]}


def _refused(status: int, answer: tuple[str, str], issue: str = "business-rule") -> lc.Refusal:
    return lc.refusal(status, answer[0], answer[1], system=STATUS_HISTORY_SYSTEM, issue=issue)
