"""Which stored R4 resources are notified to the GP, and reading everything a builder needs for one.

The rule (the trigger on store and ``$notify-gp`` share it):

- an ``Immunization`` whose status is ``completed`` → ITK009D;
- a completed ``MedicationDispense`` whose ``type`` is the emergency-supply concept → ITK010D, with
  every completed emergency-supply dispense of the same consultation (``context``): one consultation
  is one notification, so a pharmacy stores a consultation's dispenses in one transaction;
- a ``finished`` ``Encounter`` based on a referral (``basedOn`` a ``ServiceRequest``) → ITK013D (the
  minor illness referral consultation, see ``gpnotify.minor_illness``).

Reading is by following the references of what is read (Patient, its practice, practitioners,
organisations, location, medications, the referral and its requester, the complaint …) and by the
few reverse searches a builder needs (the patient's Consent, the pharmacy's Composition of the
consultation, a practitioner's roles, the consultation's observations and dispenses). ``reader`` is
the store as the pharmacy sees it (``ctx.store.as_caller``): a notification can only carry what the
pharmacy itself may read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from gpnotify.emergency_supply import EMERGENCY_SUPPLY, build_emergency_supply, is_emergency_supply
from gpnotify.immunisation import IMMUNISATION, build_immunisation
from gpnotify.itk import ItkMessage, Kind, Sender
from gpnotify.minor_illness import MINOR_ILLNESS, build_minor_illness_referral
from gpnotify.r4 import Resource, key_of, missing

TYPES = ("Immunization", "MedicationDispense", "Encounter")  # what may start a notification
_REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
# what a builder may need by reference; anything else (the whole record behind a Task, say) is not read
_FOLLOW = frozenset(
    {
        "Patient",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Encounter",
        "Location",
        "Medication",
        "ServiceRequest",
        "Condition",
    }
)
MAX_RESOURCES = 200  # a runaway reference graph is a refusal, not a huge message


class Reader(Protocol):
    def read(self, resource_type: str, resource_id: str) -> dict | None: ...

    def search(
        self, resource_type: str, query: str | list[tuple[str, str]], count: int = 200
    ) -> list[dict]: ...


@dataclass(frozen=True)
class Notification:
    """A built notification and what its tracking record names."""

    message: ItkMessage
    about: list[str]  # the notified resources, Type/id
    patient: str | None
    encounter: str | None


def kind_of(resource: Resource) -> Kind | None:
    """The notification this stored resource starts, or None (the trigger's rule)."""
    rtype = resource.get("resourceType")
    if rtype == "Immunization":
        return IMMUNISATION if resource.get("status") == "completed" else None
    if rtype == "MedicationDispense":
        ok = resource.get("status") == "completed" and is_emergency_supply(resource)
        return EMERGENCY_SUPPLY if ok else None
    if rtype == "Encounter" and resource.get("status") == "finished":
        based_on = [key_of(b.get("reference") or "") for b in resource.get("basedOn") or []]
        return MINOR_ILLNESS if any(b.startswith("ServiceRequest/") for b in based_on) else None
    return None


def might_start(resource: Resource) -> bool:
    """``kind_of`` for a resource as the caller sent it, before the store resolved its references
    (a transaction's ``urn:uuid:`` ones): the check a write can skip all reading on."""
    if resource.get("resourceType") == "Encounter":
        return resource.get("status") == "finished" and bool(resource.get("basedOn"))
    return kind_of(resource) is not None


def explain_not_notified(resource: Resource) -> Exception:
    """Why ``$notify-gp`` refuses a resource the rule does not notify (422 at the element)."""
    rtype = resource.get("resourceType")
    if rtype == "Immunization":
        return missing("only a completed Immunization is notified to the GP", "Immunization.status")
    if rtype == "MedicationDispense":
        if resource.get("status") != "completed":
            return missing("only a completed MedicationDispense is notified", "MedicationDispense.status")
        return missing("the MedicationDispense is not an emergency supply", "MedicationDispense.type")
    if resource.get("status") != "finished":
        return missing("the consultation Encounter is not finished", "Encounter.status")
    return missing(
        "the Encounter is not a referral consultation (basedOn names no ServiceRequest)", "Encounter.basedOn"
    )


def references(value: Any) -> Iterator[str]:
    """Every relative (or absolute) literal reference in ``value``, as ``Type/id``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                m = _REFERENCE.match(v)
                if m and not v.startswith(("#", "urn:")):
                    yield m.group(1)
            else:
                yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


class _Collected:
    def __init__(self, reader: Reader):
        self.reader = reader
        self.by_key: dict[str, Resource] = {}

    def add(self, resource: Resource) -> None:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if key not in self.by_key:
            if len(self.by_key) >= MAX_RESOURCES:
                raise missing(f"the notification would need more than {MAX_RESOURCES} resources", "Resource")
            self.by_key[key] = resource

    def follow(self, start: Iterable[Resource], depth: int = 3) -> None:
        frontier = list(start)
        for r in frontier:
            self.add(r)
        for _ in range(depth):
            nxt = []
            for r in frontier:
                for key in references(r):
                    rtype, rid = key.split("/", 1)
                    if rtype not in _FOLLOW or key in self.by_key:
                        continue
                    found = self.reader.read(rtype, rid)
                    if found is not None:
                        self.add(found)
                        nxt.append(found)
            frontier = nxt

    def search(self, rtype: str, query: list[tuple[str, str]]) -> list[Resource]:
        found = self.reader.search(rtype, query)
        for r in found:
            self.add(r)
        return found

    def of_type(self, rtype: str) -> list[Resource]:
        return [r for r in self.by_key.values() if r.get("resourceType") == rtype]


def _reverse(c: _Collected, encounter: str | None) -> None:
    """The resources that point at what was collected, which builders look for among ``related``."""
    for patient in c.of_type("Patient"):
        c.search("Consent", [("patient", f"Patient/{patient['id']}"), ("status", "active")])
    for practitioner in c.of_type("Practitioner"):
        c.search("PractitionerRole", [("practitioner", f"Practitioner/{practitioner['id']}")])
    if encounter:
        c.search("Composition", [("encounter", encounter)])


def build(reader: Reader, focus: Resource, sender: Sender) -> Notification:
    """The notification ``focus`` starts, built from the store; ``FhirError`` (422) when it starts
    none or something the builder needs is missing."""
    kind = kind_of(focus)
    if kind is None:
        raise explain_not_notified(focus)
    c = _Collected(reader)
    focus_key = f"{focus['resourceType']}/{focus['id']}"
    if kind is IMMUNISATION:
        c.follow([focus])
        encounter = _key(focus.get("encounter"))
        _reverse(c, encounter)
        related = [r for k, r in c.by_key.items() if k != focus_key]
        message = build_immunisation(focus, related, sender)
        return Notification(message, [focus_key], _key(focus.get("patient")), encounter)
    if kind is EMERGENCY_SUPPLY:
        encounter = _key(focus.get("context"))
        dispenses = [focus]
        if encounter:
            same = reader.search("MedicationDispense", [("context", encounter), ("status", "completed")])
            dispenses = [d for d in same if is_emergency_supply(d)] or [focus]
            if not any(d.get("id") == focus.get("id") for d in dispenses):
                dispenses.append(focus)
        dispenses.sort(key=lambda d: str(d.get("id")))
        c.follow(dispenses)
        _reverse(c, encounter)
        keys = [f"MedicationDispense/{d['id']}" for d in dispenses]
        related = [r for k, r in c.by_key.items() if k not in keys]
        message = build_emergency_supply(dispenses, related, sender)
        return Notification(message, keys, _key(focus.get("subject")), encounter)
    c.follow([focus])
    c.follow(c.search("Observation", [("encounter", focus_key)]), depth=1)
    c.follow(c.search("MedicationDispense", [("context", focus_key)]), depth=1)
    _reverse(c, focus_key)
    related = [r for k, r in c.by_key.items() if k != focus_key]
    message = build_minor_illness_referral(focus, related, sender)
    return Notification(message, [focus_key], _key(focus.get("subject")), focus_key)


def _key(ref: Any) -> str | None:
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        m = _REFERENCE.match(ref["reference"])
        return m.group(1) if m else None
    return None
