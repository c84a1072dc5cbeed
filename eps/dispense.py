"""``dispense-notification``: the pharmacy a prescription is with reports what it dispensed.

The message (EPS's shape) names the prescription-order message it answers
(``MessageHeader.response.identifier``) and carries one MedicationDispense per dispensed line
item: ``authorizingPrescription`` points at the MedicationRequest (contained, as EPS's examples
do, or in the Bundle) whose ``groupIdentifier`` is the prescription's short-form id and whose
identifier is the line item's; ``type`` (medicationdispense-type) is the item's new status, e.g.
0001 "Item fully dispensed"; Extension-EPS-TaskBusinessStatus the status the pharmacy reports.

Only the pharmacy the prescription is with may send one: its tracking Task is looked for through
the store *as that pharmacy*, must be owned by it and be WITH_DISPENSER or WITH_DISPENSER_ACTIVE.
What is stored, in ONE transaction guarded by the versions read (``lifecycle``):

- the MedicationDispenses, labelled like the prescription (which includes the pharmacy), each
  pointing at the stored MedicationRequest and carrying the notification's identifier, with the
  message's other resources they refer to (the pharmacy's Organization) *contained*: stored on
  their own, each notification would add one more Organization with the pharmacy's ODS code, and
  a conditional create by that code (a hub-and-spoke message's Organization) would then match
  several and fail (HAPI-0958);
- each named line item's status on its MedicationRequest (Extension-EPS-DispensingInformation,
  as EPS writes it, and the FHIR status that says the same: 0001 ``completed``);
- the tracking Task: WITH_DISPENSER_ACTIVE, or DISPENSED once every line item has reached its end
  with at least one fully dispensed (NOT_DISPENSED when none was), and one more ``output`` naming
  the notification (what a withdrawal takes back);
- an AuditEvent ``dispensed`` naming the client.

The status the pharmacy reports is not trusted: the broker derives the prescription's status from
the line items, as Spine does.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from typing import Any

from eps import lifecycle as lc
from eps.events import EpsStore, EventResult, Sender
from eps.records import LINE_ITEM_SYSTEM, BusinessStatus, business_status, labelled, owner_ods
from proxy.errors import FhirError

EVENT = "dispense-notification"
TASK_BUSINESS_STATUS_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-EPS-TaskBusinessStatus"
CALLERS = frozenset({"dispenser"})
DISPENSABLE = (BusinessStatus.WITH_DISPENSER, BusinessStatus.WITH_DISPENSER_ACTIVE)
_MD = "Bundle.entry.resource.ofType(MedicationDispense)"


class Dispensed:
    """One MedicationDispense of the message and what it names."""

    def __init__(self, index: int, full_url: str, resource: dict, short_id: str, line_item: str, code: str):
        self.index, self.full_url, self.resource = index, full_url, resource
        self.short_id, self.line_item, self.code = short_id, line_item, code


def handle(message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult:
    """The ``dispense-notification`` handler for the ``$process-message`` dispatcher."""
    if sender.role not in CALLERS:
        raise FhirError(403, f"{EVENT} is for dispensing systems (role dispenser)", code="forbidden")
    response_id, notification_id, dispensed = read_notification(message)
    try:
        record(
            store.as_caller(sender.role, sender.ods),
            sender,
            message,
            response_id,
            notification_id,
            dispensed,
            now,
        )
    except lc.Conflict as exc:
        return EventResult(exc.to_resource(), "transient-error", 503)
    except lc.Refusal as exc:
        return EventResult(exc.to_resource(), "fatal-error", exc.status)
    return EventResult(lc.informational())


def record(
    store: EpsStore,
    sender: Sender,
    message: dict,
    response_id: str,
    notification_id: str,
    dispensed: list[Dispensed],
    now: datetime,
) -> None:
    short_id = dispensed[0].short_id
    prescription = lc.find(store, short_id)
    if prescription is None:
        raise lc.not_found()
    if owner_ods(prescription.task) != sender.ods:
        raise lc.refusal(403, *lc.WITH_ANOTHER_DISPENSER)
    status = business_status(prescription.task)
    if status not in DISPENSABLE:
        raise lc.state_refusal(status)
    if not lc.names_the_order(store, prescription, response_id):
        raise FhirError(
            400,
            f"MessageHeader.response.identifier must name the prescription-order message of "
            f"prescription {short_id}",
            ["Bundle.entry.resource.ofType(MessageHeader).response.identifier"],
            code="value",
        )
    if any(lc.same_id(n, notification_id) for n in prescription.notifications()):
        raise FhirError(409, f"Dispense notification {notification_id} is already recorded", code="duplicate")

    codes = {str(r["id"]): lc.item_status(r) or lc.WITH_DISPENSER_ITEM for r in prescription.items}
    before = dict(codes)
    requests: dict[str, dict] = {}
    for d in dispensed:
        item = prescription.item(d.line_item)
        if item is None:
            raise lc.refusal(404, *lc.ITEM_NOT_FOUND, issue="not-found")
        if before[str(item["id"])] in lc.FINAL_ITEM_STATUSES:
            raise lc.refusal(422, *lc.ITEM_INVALID_TRANSITION)
        codes[str(item["id"])] = d.code
        requests[d.full_url] = item

    labels = prescription.labels()
    task = lc.moved_task(prescription.task, lc.prescription_status(list(codes.values()), True), now)
    task.setdefault("output", []).append(
        {
            "type": dict(lc.NOTIFICATION_OUTPUT),
            "valueIdentifier": {"system": lc.NOTIFICATION_SYSTEM, "value": notification_id},
        }
    )
    entries = [
        lc.update_entry(lc.with_item_status(r, codes[str(r["id"])]), lc.version_of(r))
        for r in prescription.items
        if codes[str(r["id"])] != before[str(r["id"])] or lc.item_status(r) is None
    ]
    entries.append(lc.update_entry(task, lc.version_of(prescription.task)))
    parts = _referenced_parts(message)
    for d in dispensed:
        stored = _contained_parts(_stored(d, requests[d.full_url], labels, notification_id), parts)
        entries.append(lc.create_entry(stored, d.full_url))
    entries.append(
        lc.create_entry(lc.audit_event("dispensed", sender, prescription, now), f"urn:uuid:{uuid.uuid4()}")
    )
    lc.commit(store, short_id, entries)


def read_notification(message: dict) -> tuple[str, str, list[Dispensed]]:
    """(the prescription-order message id it answers, its own id, its dispenses), or 400."""
    entries = [
        e for e in message.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    header: dict[str, Any] = next(
        (e["resource"] for e in entries if e["resource"].get("resourceType") == "MessageHeader"), {}
    )
    response_id = (header.get("response") or {}).get("identifier")
    identifier = message.get("identifier")
    notification_id = (identifier.get("value") if isinstance(identifier, dict) else None) or message.get("id")
    problems: list[tuple[str, list[str]]] = []
    if not isinstance(response_id, str) or not response_id:
        problems.append(
            (
                "Required field MessageHeader.response.identifier is missing.",
                ["Bundle.entry.resource.ofType(MessageHeader).response.identifier"],
            )
        )
    if not isinstance(notification_id, str) or not notification_id:
        problems.append(("Required field Bundle.identifier.value is missing.", ["Bundle.identifier.value"]))
    dispensed: list[Dispensed] = []
    for index, entry in enumerate(entries):
        resource = entry["resource"]
        if resource.get("resourceType") != "MedicationDispense":
            continue
        where = f"Bundle.entry[{index}].resource"
        found = _dispensed(message, index, entry, where, problems)
        if found is not None:
            dispensed.append(found)
    if not dispensed and not problems:
        problems.append(
            ("Required field Bundle.entry.resource.ofType(MedicationDispense) is missing.", [_MD])
        )
    short_ids = sorted({d.short_id for d in dispensed})
    if len(short_ids) > 1:
        problems.append(
            (
                "Expected all MedicationDispenses to have the same value for "
                f"authorizingPrescription.groupIdentifier. Received {short_ids}.",
                [f"{_MD}.authorizingPrescription"],
            )
        )
    handed_over = sorted({str(d.resource.get("whenHandedOver")) for d in dispensed})
    if len(handed_over) > 1:
        problems.append(
            (
                "Expected all MedicationDispenses to have the same value for whenHandedOver. "
                f"Received {handed_over}.",
                [f"{_MD}.whenHandedOver"],
            )
        )
    if problems:
        raise FhirError.many(400, problems, code="value")
    return str(response_id), str(notification_id), dispensed


def _dispensed(
    message: dict, index: int, entry: dict, where: str, problems: list[tuple[str, list[str]]]
) -> Dispensed | None:
    resource = entry["resource"]
    prescribed = _prescribed(message, resource)
    group = (prescribed or {}).get("groupIdentifier") or {}
    short_id = group.get("value") if isinstance(group, dict) else None
    line_item = next(
        (
            i.get("value")
            for i in (prescribed or {}).get("identifier") or []
            if isinstance(i, dict) and i.get("system") == LINE_ITEM_SYSTEM
        ),
        None,
    )
    code = next(
        (
            c.get("code")
            for c in (resource.get("type") or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") == lc.DISPENSE_TYPE_SYSTEM
        ),
        None,
    )
    bad = len(problems)
    if not isinstance(short_id, str) or not isinstance(line_item, str):
        problems.append(
            (
                "MedicationDispense.authorizingPrescription must name a MedicationRequest with the "
                "prescription's groupIdentifier and the line item's identifier.",
                [f"{where}.authorizingPrescription"],
            )
        )
    if code not in lc.ITEM_DISPLAY:
        problems.append(
            (
                f"MedicationDispense.type must have a system of '{lc.DISPENSE_TYPE_SYSTEM}' "
                "and a value from that system.",
                [f"{where}.type"],
            )
        )
    if not any(
        isinstance(e, dict) and e.get("url") == TASK_BUSINESS_STATUS_URL
        for e in resource.get("extension") or []
    ):
        problems.append(
            (
                f'Expected MedicationDispense to have a value for extension("{TASK_BUSINESS_STATUS_URL}").',
                [f"{where}.extension"],
            )
        )
    if len(problems) > bad:
        return None
    full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else f"urn:uuid:{uuid.uuid4()}"
    return Dispensed(index, str(full_url), resource, str(short_id), str(line_item), str(code))


def _prescribed(message: dict, dispense: dict) -> dict | None:
    """The MedicationRequest a dispense's ``authorizingPrescription`` names: contained (``#m1``),
    an entry of the message, or a logical reference by the line item's identifier."""
    refs = dispense.get("authorizingPrescription") or []
    ref = refs[0] if isinstance(refs, list) and refs and isinstance(refs[0], dict) else {}
    target = ref.get("reference")
    if isinstance(target, str) and target.startswith("#"):
        return next(
            (c for c in dispense.get("contained") or [] if isinstance(c, dict) and c.get("id") == target[1:]),
            None,
        )
    if isinstance(target, str):
        return next(
            (
                e["resource"]
                for e in message.get("entry") or []
                if isinstance(e, dict) and e.get("fullUrl") == target and isinstance(e.get("resource"), dict)
            ),
            None,
        )
    return None


def _stored(d: Dispensed, request: dict, labels: list[dict[str, str]], notification_id: str) -> dict:
    """The MedicationDispense as kept: pointing at the stored line item, naming its notification."""
    md = copy.deepcopy(d.resource)
    md.pop("id", None)
    target = ((md.get("authorizingPrescription") or [{}])[0] or {}).get("reference")
    if isinstance(target, str) and target.startswith("#"):
        md["contained"] = [c for c in md.get("contained") or [] if c.get("id") != target[1:]]
        if not md["contained"]:
            md.pop("contained")
    line = next(i for i in request.get("identifier") or [] if i.get("system") == LINE_ITEM_SYSTEM)
    md["authorizingPrescription"] = [
        {"reference": f"MedicationRequest/{request['id']}", "identifier": dict(line)}
    ]
    md["identifier"] = [
        *(md.get("identifier") or []),
        {"system": lc.NOTIFICATION_SYSTEM, "value": notification_id},
    ]
    return labelled(md, labels)


def _referenced_parts(message: dict) -> dict[str, dict]:
    """The message's other resources (the pharmacy's Organization, ...) by fullUrl."""
    parts = {}
    for e in message.get("entry") or []:
        resource = e.get("resource") if isinstance(e, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") in (
            "MessageHeader",
            "MedicationDispense",
            "Bundle",
            "Provenance",
        ):
            continue
        if isinstance(e.get("fullUrl"), str):
            parts[e["fullUrl"]] = resource
    return parts


def _contained_parts(md: dict, parts: dict[str, dict]) -> dict:
    """``md`` with each message resource it (or what it contains) refers to contained in it
    (``#part-n``), references rewritten to match."""
    named: dict[str, str] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "reference" and isinstance(item, str) and item in parts:
                    if item not in named:
                        named[item] = f"part-{len(named) + 1}"
                    value[key] = "#" + named[item]
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(md)
    done: set[str] = set()
    while len(done) < len(named):  # a contained part may refer to another part in turn
        for full_url, local in list(named.items()):
            if full_url in done:
                continue
            done.add(full_url)
            part = copy.deepcopy(parts[full_url])
            part.pop("meta", None)  # a contained resource carries no meta of its own
            part["id"] = local
            walk(part)
            md.setdefault("contained", []).append(part)
    return md
