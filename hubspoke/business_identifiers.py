"""Which business identifier a resource of a hub-and-spoke message is known by: a Patient by its
NHS Number, an Organization by its ODS code. The seed's bundles create both with a plain POST;
sent as they are, every message would store a new copy of the same patient and pharmacy. A
create of either without criteria of its own is made conditional on that identifier
(``ifNoneExist``), so a repeat resolves to the record already stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubspoke.identifiers import NHS_NUMBER_SYSTEM, ODS_SYSTEM
from hubspoke.messages import bundle_entries, entry_method, entry_request, entry_resource, url_type

KEYS = {"Patient": NHS_NUMBER_SYSTEM, "Organization": ODS_SYSTEM}


@dataclass(frozen=True)
class ConditionalCreate:
    index: int  # of the entry in Bundle.entry
    resource_type: str
    system: str
    value: str

    @property
    def criteria(self) -> str:
        return f"identifier={self.system}|{self.value}"

    @property
    def expression(self) -> str:
        return f"Bundle.entry[{self.index}].resource.identifier"


def business_identifier(resource: dict) -> tuple[str, str] | None:
    """(system, value) of the one identifier the resource is known by, or None: none, or two
    different values (then which record is meant is not for us to guess)."""
    system = KEYS.get(str(resource.get("resourceType")))
    identifiers = resource.get("identifier")
    if system is None or not isinstance(identifiers, list):
        return None
    values = {
        i["value"]
        for i in identifiers
        if isinstance(i, dict)
        and i.get("system") == system
        and isinstance(i.get("value"), str)
        and i["value"]
    }
    return (system, values.pop()) if len(values) == 1 else None


def conditional_creates(bundle: dict) -> list[ConditionalCreate]:
    """The plain creates of a message's Patients and Organizations, each with the identifier to
    make it conditional on. A create that already has ``ifNoneExist`` keeps the sender's."""
    out = []
    for i, entry in enumerate(bundle_entries(bundle)):
        resource = entry_resource(entry)
        rtype = resource.get("resourceType")
        if (
            rtype not in KEYS
            or entry_method(entry) != "POST"
            or url_type(str(entry_request(entry).get("url"))) != rtype
        ):
            continue
        if entry_request(entry).get("ifNoneExist"):
            continue
        if key := business_identifier(resource):
            out.append(ConditionalCreate(i, str(rtype), *key))
    return out


def make_conditional(bundle: dict) -> list[ConditionalCreate]:
    """Set ``ifNoneExist`` on each of ``conditional_creates(bundle)``; returns them."""
    made = conditional_creates(bundle)
    entries = bundle_entries(bundle)
    for c in made:
        entries[c.index]["request"]["ifNoneExist"] = c.criteria
    return made
