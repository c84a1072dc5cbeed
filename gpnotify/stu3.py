"""R4 → STU3 for the resources every notification carries (Patient, Practitioner, PractitionerRole,
Organization, Location, Encounter), and the mechanics the message-specific modules share:
code systems and UK Core extensions renamed to their STU3 / CareConnect names, references rewritten
to the document's ``urn:uuid`` entries.

The shapes of these resources hardly changed between STU3 and R4; where they did, the converter says
why it chose what it chose. Unknown R4-only elements are dropped, never passed through: a GP system
validating against STU3 would refuse the whole document for one element it does not know.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from gpnotify.r4 import Related, Resource, human_name, key_of

CARECONNECT = "https://fhir.hl7.org.uk/STU3/StructureDefinition/"
ITK = "https://fhir.nhs.uk/STU3/StructureDefinition/"

# UK Core (R4) names → CareConnect (STU3) names, for code systems and extensions alike
_UKCORE_CS, _UKCORE_SD = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-",
    "https://fhir.hl7.org.uk/StructureDefinition/",
)
_CC_CS = "https://fhir.hl7.org.uk/STU3/CodeSystem/CareConnect-"
_RENAMED = {
    _UKCORE_CS + "NHSNumberVerificationStatusEngland": _CC_CS + "NHSNumberVerificationStatus-1",
    _UKCORE_CS + "NHSNumberVerificationStatus": _CC_CS + "NHSNumberVerificationStatus-1",
    _UKCORE_CS + "SDSJobRoleName": _CC_CS + "SDSJobRoleName-1",
    _UKCORE_SD + "Extension-UKCore-NHSNumberVerificationStatus": CARECONNECT
    + "Extension-CareConnect-NHSNumberVerificationStatus-1",
    _UKCORE_SD + "Extension-UKCore-VaccinationProcedure": CARECONNECT
    + "Extension-CareConnect-VaccinationProcedure-1",
    _UKCORE_SD + "Extension-UKCore-MedicationQuantityText": CARECONNECT
    + "Extension-CareConnect-MedicationQuantityText-1",
    _UKCORE_SD + "Extension-UKCore-MedicationRepeatInformation": CARECONNECT
    + "Extension-CareConnect-MedicationRepeatInformation-1",
}
_THO = re.compile(r"^http://terminology\.hl7\.org/CodeSystem/(v2|v3)-(.+)$")
_THO_FHIR = re.compile(r"^http://terminology\.hl7\.org/CodeSystem/(.+)$")


def system(url: str) -> str:
    """The STU3 name of an R4 code system / extension URL (THO moved HL7's own systems in R4)."""
    if url in _RENAMED:
        return _RENAMED[url]
    if m := _THO.match(url):
        return f"http://hl7.org/fhir/{m.group(1)}/{m.group(2)}"
    if m := _THO_FHIR.match(url):
        return f"http://hl7.org/fhir/{m.group(1)}"
    return url


def entry_id(message_id: str, key: str) -> str:
    """A document entry's id: stable for one message and resource, so a rebuilt message is the same."""
    return str(uuid.uuid5(uuid.UUID(message_id), key))


class Converter:
    """Turns the related R4 resources into STU3 entries of one document, with ``urn:uuid`` references.

    ``bundled`` maps R4 ``Type/id`` → the entry's uuid; only references to bundled resources survive
    (an ITK document must be self-contained), others keep their display and identifier only."""

    def __init__(self, message_id: str, related: Related):
        self.message_id = message_id
        self.related = related
        self.bundled: dict[str, str] = {}

    def include(self, resource: Resource) -> str:
        key = f"{resource['resourceType']}/{resource['id']}"
        if key not in self.bundled:
            self.bundled[key] = entry_id(self.message_id, key)
        return self.bundled[key]

    def urn(self, resource: Resource) -> str:
        return "urn:uuid:" + self.include(resource)

    def value(self, value: Any) -> Any:
        """A deep copy of an R4 element with systems renamed and references rewritten."""
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("system", "url") and isinstance(v, str):
                out[k] = system(v)
            elif k == "reference" and isinstance(v, str):
                target = self.bundled.get(key_of(v))
                if target:
                    out[k] = "urn:uuid:" + target
            else:
                out[k] = self.value(v)
        return out

    def ref(self, resource: Resource, display: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.urn(resource)}
        if display:
            out["display"] = display_of(resource)
        return out


def display_of(resource: Mapping[str, Any]) -> str:
    """How the examples display a person (``DAWKINS, Jack``) or an organisation (its name)."""
    if resource.get("resourceType") in ("Patient", "Practitioner"):
        family, given = human_name(resource)
        return f"{family.upper()}, {given}" if given else family.upper()
    return str(resource.get("name") or "")


def _base(conv: Converter, r4: Resource, profile: str, keep: tuple[str, ...]) -> Resource:
    out: Resource = {
        "resourceType": r4["resourceType"],
        "id": conv.include(r4),
        "meta": {"profile": [profile]},
    }
    for k in keep:
        if k in r4:
            out[k] = conv.value(r4[k])
    return out


def patient(conv: Converter, r4: Resource) -> Resource:
    keep: tuple[str, ...] = (
        "extension",
        "identifier",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "address",
        "maritalStatus",
    )
    keep += ("contact", "generalPractitioner", "managingOrganization")
    return _base(conv, r4, CARECONNECT + "CareConnect-Patient-1", keep)


def practitioner(conv: Converter, r4: Resource) -> Resource:
    keep: tuple[str, ...] = ("identifier", "name", "telecom", "address", "gender", "qualification")
    return _base(conv, r4, CARECONNECT + "CareConnect-Practitioner-1", keep)


def practitioner_role(conv: Converter, r4: Resource) -> Resource:
    keep: tuple[str, ...] = (
        "identifier",
        "practitioner",
        "organization",
        "code",
        "specialty",
        "location",
        "telecom",
    )
    return _base(conv, r4, CARECONNECT + "CareConnect-PractitionerRole-1", keep)


def organization(conv: Converter, r4: Resource) -> Resource:
    keep: tuple[str, ...] = ("identifier", "type", "name", "telecom", "address", "partOf")
    return _base(conv, r4, CARECONNECT + "CareConnect-Organization-1", keep)


def location(conv: Converter, r4: Resource) -> Resource:
    keep: tuple[str, ...] = (
        "identifier",
        "status",
        "name",
        "description",
        "mode",
        "type",
        "telecom",
        "address",
    )
    keep += ("physicalType", "managingOrganization")
    return _base(conv, r4, CARECONNECT + "CareConnect-Location-1", keep)


def encounter(conv: Converter, r4: Resource) -> Resource:
    """R4 made ``class`` mandatory, so every stored Encounter has one (mostly a bare AMB); the ITK
    Encounter of the examples carries none, and a GP system files by the document type, not by it:
    dropped. ``reasonCode`` was STU3's ``reason``."""
    keep: tuple[str, ...] = (
        "identifier",
        "status",
        "type",
        "priority",
        "subject",
        "participant",
        "period",
        "diagnosis",
    )
    keep += ("serviceProvider",)
    out = _base(conv, r4, ITK + "CareConnect-ITK-Encounter-1", keep)
    if r4.get("reasonCode"):
        out["reason"] = conv.value(r4["reasonCode"])
    if r4.get("location"):
        out["location"] = [
            {"location": conv.value(x["location"])} for x in r4["location"] if x.get("location")
        ]
    return out


# the common entries, in the order the shared examples put them after the clinical content
CONVERTERS: dict[str, Callable[[Converter, Resource], Resource]] = {
    "Patient": patient,
    "Practitioner": practitioner,
    "PractitionerRole": practitioner_role,
    "Organization": organization,
    "Location": location,
    "Encounter": encounter,
}


def drop_empty(value: Any) -> Any:
    """FHIR has no empty elements: a reference that did not survive (no bundled target) goes."""
    if isinstance(value, dict):
        cleaned = {k: drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in ({}, [], None, "")}
    if isinstance(value, list):
        cleaned_list = [drop_empty(v) for v in value]
        return [v for v in cleaned_list if v not in ({}, [], None, "")]
    return value
