"""Return and withdraw: ``POST [base]/Task`` by the pharmacy a prescription is with.

EPS's two Task shapes (its dispensing API, examples ``dispensing/return`` and ``withdraw``):

- **return** — ``status: rejected``, ``statusReason`` from EPS-task-dispense-return-status-reason:
  the pharmacy gives the prescription back. It becomes TO_BE_DISPENSED and releasable again,
  owned by its nominated pharmacy if it has one, else by nobody; the returning pharmacy keeps its
  tenant label (it may still see what it held). Only a prescription that is WITH_DISPENSER can
  be returned: one with a dispense notification in effect is withdrawn first.
- **withdraw** — ``status: in-progress``, ``code: abort``, ``statusReason`` from
  EPS-task-dispense-withdraw-reason, ``focus.identifier`` = the dispense notification's id: the
  last dispense notification is taken back. Its MedicationDispenses become ``entered-in-error``,
  the line items return to the status the earlier notifications left them at (with dispenser when
  none), and the prescription to WITH_DISPENSER (WITH_DISPENSER_ACTIVE while earlier ones stand).

Both name the prescription by ``groupIdentifier`` (short-form id) and the patient by
``for.identifier`` (NHS Number); a return's ``focus.identifier`` is the prescription-order
message's id. The Task is checked with EPS's validator rules and wording
(``services/validation/task-validator.ts``). The prescription is looked for *as the pharmacy*:
one it cannot see is "not found", one it sees but that is with another pharmacy is refused (403).
The answer is EPS's: an informational OperationOutcome. The Task posted is not stored: it is a
request to change the prescription, which the tracking Task, the line items, the dispenses and an
AuditEvent (``returned``, ``withdrawn``) record, in one guarded transaction (``lifecycle``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eps import lifecycle as lc
from eps import release
from eps.events import EpsStore, Sender
from eps.records import BusinessStatus, business_status, owner_ods
from hubspoke.identifiers import NHS_NUMBER_SYSTEM
from proxy.errors import FhirError

RETURN_REASON_SYSTEM = "https://fhir.nhs.uk/CodeSystem/EPS-task-dispense-return-status-reason"
WITHDRAW_REASON_SYSTEM = "https://fhir.nhs.uk/CodeSystem/EPS-task-dispense-withdraw-reason"
TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
WITHDRAWABLE = (BusinessStatus.WITH_DISPENSER_ACTIVE, BusinessStatus.DISPENSED, BusinessStatus.NOT_DISPENSED)
LAST_DISPENSE_MISMATCH = (
    "DISPENSE_AMEND_IDENTIFIER_MISMATCH",
    "Dispense Amendment/Cancellation Request does not pertain to Last Dispense",
)


def handle(task: object, sender: Sender, store: EpsStore, now: datetime) -> dict[str, Any]:
    """Return or withdraw as ``task`` asks; EPS's informational OperationOutcome when done.
    Refusals are raised (``FhirError``; a race with another change is ``lifecycle.Conflict``)."""
    kind = validate(task)
    assert isinstance(task, dict)
    caller = store.as_caller(sender.role, sender.ods)
    short_id = str(task["groupIdentifier"]["value"])
    prescription = lc.find(caller, short_id)
    if prescription is None:
        raise lc.not_found()
    if owner_ods(prescription.task) != sender.ods:
        raise lc.refusal(403, *lc.WITH_ANOTHER_DISPENSER, issue="forbidden")
    patient = ((prescription.task.get("for") or {}).get("identifier") or {}).get("value")
    if patient != task["for"]["identifier"]["value"]:
        raise FhirError(
            400,
            f"Task.for must name the patient of prescription {short_id}",
            ["Task.for.identifier.value"],
            code="value",
        )
    if kind == "return":
        _return(caller, sender, prescription, task, now)
    else:
        _withdraw(caller, sender, prescription, task, now)
    return lc.informational()


def validate(task: object) -> str:
    """``"return"`` or ``"withdraw"``, or a 400 listing every problem, as EPS words them."""
    if not isinstance(task, dict) or task.get("resourceType") != "Task":
        raise FhirError(400, "Incorrect FHIR resource type. Expected Task.", ["Task"], code="value")
    problems: list[tuple[str, list[str]]] = []
    if task.get("intent") != "order":
        problems.append(("Task.intent must be one of: 'order'.", ["Task.intent"]))
    status = task.get("status")
    kind = {"rejected": "return", "in-progress": "withdraw"}.get(status if isinstance(status, str) else "")
    if kind is None:
        problems.append(("Task.status must be one of: 'in-progress', 'rejected'.", ["Task.status"]))
    elif kind == "withdraw":
        code = task.get("code")
        if not code:
            problems.append(("Task.code is required when Task.status is 'in-progress'.", ["Task.code"]))
        elif _code(code, TASK_CODE_SYSTEM) != "abort":
            problems.append(("Task.code.coding.code must be one of: 'abort'.", ["Task.code.coding.code"]))
    if kind is not None:
        system = RETURN_REASON_SYSTEM if kind == "return" else WITHDRAW_REASON_SYSTEM
        if not _code(task.get("statusReason"), system):
            # EPS's validator names Task.reasonCode here while it checks statusReason: we name
            # the element it checks
            problems.append(
                (
                    f"Task.statusReason must have a system of '{system}' and a value from that system.",
                    ["Task.statusReason"],
                )
            )
    for path, value in (
        ("Task.groupIdentifier.value", (_obj(task.get("groupIdentifier"))).get("value")),
        ("Task.focus.identifier.value", _obj(_obj(task.get("focus")).get("identifier")).get("value")),
        ("Task.for.identifier.value", _nhs_number(task)),
    ):
        if not isinstance(value, str) or not value:
            problems.append((f"Required field {path} is missing.", [path]))
    if problems:
        raise FhirError.many(400, problems, code="value")
    assert kind is not None
    return kind


def _return(store: EpsStore, sender: Sender, p: lc.Prescription, task: dict, now: datetime) -> None:
    status = business_status(p.task)
    if status is BusinessStatus.WITH_DISPENSER_ACTIVE:
        raise lc.refusal(
            422,
            lc.INVALID_TRANSITION[0],
            f"{lc.INVALID_TRANSITION[1]}: a dispense notification is in effect; withdraw it first",
        )
    if status is not BusinessStatus.WITH_DISPENSER:
        raise lc.state_refusal(status)
    if not lc.names_the_order(store, p, task["focus"]["identifier"]["value"]):
        raise FhirError(
            400,
            f"Task.focus.identifier must name the prescription-order message of prescription {p.short_id}",
            ["Task.focus.identifier.value"],
            code="value",
        )
    nominated = p.nominated_ods()
    moved = lc.moved_task(p.task, BusinessStatus.TO_BE_DISPENSED, now, owner=nominated)
    if nominated is None:
        moved.pop("owner", None)
    moved.pop("output", None)
    _forget_release(moved)
    entries = [
        lc.update_entry(lc.with_item_status(r, lc.TO_BE_DISPENSED_ITEM), lc.version_of(r))
        for r in p.items
        if lc.item_status(r) == lc.WITH_DISPENSER_ITEM
    ]
    entries.append(lc.update_entry(moved, lc.version_of(p.task)))
    event = lc.audit_event("returned", sender, p, now, task["statusReason"])
    entries.append(lc.create_entry(event, f"urn:uuid:{uuid.uuid4()}"))
    lc.commit(store, p.short_id, entries)


def _withdraw(store: EpsStore, sender: Sender, p: lc.Prescription, task: dict, now: datetime) -> None:
    status = business_status(p.task)
    notifications = p.notifications()
    if status not in WITHDRAWABLE or not notifications:
        raise lc.state_refusal(status if status not in WITHDRAWABLE else None)
    last, earlier = notifications[-1], notifications[:-1]
    if not lc.same_id(last, task["focus"]["identifier"]["value"]):
        raise lc.refusal(422, *LAST_DISPENSE_MISMATCH)
    withdrawn = _dispenses(store, [last])
    standing = _dispenses(store, earlier)
    # where each line item stood before the withdrawn notification: what the earlier ones left
    # (in their order), else with the dispenser; an item its prescriber cancelled stays cancelled
    codes = {
        str(r["id"]): lc.CANCELLED_ITEM if r.get("statusReason") else lc.WITH_DISPENSER_ITEM for r in p.items
    }
    for md in sorted(standing, key=lambda m: earlier.index(_notification_of(m, earlier))):
        ref = ((md.get("authorizingPrescription") or [{}])[0] or {}).get("reference") or ""
        code = next(
            (
                c.get("code")
                for c in (md.get("type") or {}).get("coding") or []
                if c.get("system") == lc.DISPENSE_TYPE_SYSTEM
            ),
            None,
        )
        if ref.startswith("MedicationRequest/") and ref.split("/", 1)[1] in codes and code:
            codes[ref.split("/", 1)[1]] = code
    moved = lc.moved_task(p.task, lc.prescription_status(list(codes.values()), bool(earlier)), now)
    moved["output"] = [
        o
        for o in moved.get("output") or []
        if not lc.same_id((o.get("valueIdentifier") or {}).get("value"), last)
        or (o.get("valueIdentifier") or {}).get("system") != lc.NOTIFICATION_SYSTEM
    ]
    if not moved["output"]:
        moved.pop("output")
    entries = [
        lc.update_entry(lc.with_item_status(r, codes[str(r["id"])]), lc.version_of(r))
        for r in p.items
        if lc.item_status(r) != codes[str(r["id"])]
    ]
    entries.append(lc.update_entry(moved, lc.version_of(p.task)))
    for md in withdrawn:
        entries.append(lc.update_entry({**md, "status": "entered-in-error"}, lc.version_of(md)))
    event = lc.audit_event("withdrawn", sender, p, now, task["statusReason"])
    entries.append(lc.create_entry(event, f"urn:uuid:{uuid.uuid4()}"))
    lc.commit(store, p.short_id, entries)


def _forget_release(task: dict) -> None:
    """The Task no longer says who released it: nobody holds the prescription now (the release's
    AuditEvent keeps the history)."""
    ours = (release.AGENT_EXTENSION, release.RELEASE_ID_EXTENSION)
    task["extension"] = [e for e in task.get("extension") or [] if e.get("url") not in ours]
    task["contained"] = [c for c in task.get("contained") or [] if c.get("id") != release.AGENT_ID]
    for key in ("extension", "contained"):
        if not task[key]:
            del task[key]


def _dispenses(store: EpsStore, notifications: list[str]) -> list[dict]:
    if not notifications:
        return []
    found = store.search(
        "MedicationDispense",
        [
            ("identifier", ",".join(f"{lc.NOTIFICATION_SYSTEM}|{n}" for n in notifications)),
            ("status:not", "entered-in-error"),
        ],
    )
    return found


def _notification_of(md: dict, notifications: list[str]) -> str:
    for i in md.get("identifier") or []:
        if i.get("system") == lc.NOTIFICATION_SYSTEM and i.get("value") in notifications:
            return str(i["value"])
    return notifications[0]


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _code(concept: object, system: str) -> str | None:
    for coding in _obj(concept).get("coding") or []:
        if (
            isinstance(coding, dict)
            and coding.get("system") == system
            and isinstance(coding.get("code"), str)
        ):
            return str(coding["code"])
    return None


def _nhs_number(task: dict) -> str | None:
    identifier = _obj(_obj(task.get("for")).get("identifier"))
    if identifier.get("system") not in (None, NHS_NUMBER_SYSTEM):
        return None
    value = identifier.get("value")
    return value if isinstance(value, str) else None
