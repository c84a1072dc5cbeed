"""Medicines handed over in a consultation, as the Digital Medicine documents carry them (ITK010D
emergency supply, ITK013D minor illness referral): R4 MedicationDispense / Medication → STU3
CareConnect-ITK-MedicationDispense-1 / CareConnect-ITK-Medication-1, and the List of them.

- R4 dropped ``performer.onBehalfOf``; the pharmacy the pharmacist acted for is the consultation's
  ``Encounter.serviceProvider``, so that is what it says;
- ``quantity`` carries the CareConnect MedicationQuantityText extension: the stored one (UK Core's
  name) when the pharmacy recorded a text, else "<value> <unit>", as the emergency supply example writes it;
- the dispenses are listed in a CareConnect-ITK-MedicationDispense-List-1 List ("Dispensed Medication"),
  dated the day they were handed over, which the Medications section refers to.
"""

from __future__ import annotations

import uuid
from typing import Any

from gpnotify import sections
from gpnotify.itk import RFC4122, SNOMED, Section, coding
from gpnotify.r4 import Resource
from gpnotify.stu3 import CARECONNECT, ITK, Converter

QUANTITY_TEXT = CARECONNECT + "Extension-CareConnect-MedicationQuantityText-1"


def dispensed_list(conv: Converter, list_id: str, first: Resource, dispenses: list[Resource]) -> Resource:
    handed = str(first.get("whenHandedOver") or first.get("whenPrepared") or "")
    out: Resource = {
        "resourceType": "List",
        "id": list_id,
        "meta": {"profile": [ITK + "CareConnect-ITK-MedicationDispense-List-1"]},
        "identifier": [{"system": RFC4122, "value": str(uuid.uuid5(uuid.UUID(list_id), "identifier"))}],
        "status": "current",
        "mode": "snapshot",
        "code": {"coding": [coding(SNOMED, "163541000000107", "Dispensed Medication")]},
        "subject": conv.value(first["subject"]),
        "encounter": conv.value(first["context"]),
    }
    if handed:
        out["date"] = handed[:10]
    out["entry"] = [{"item": {"reference": conv.urn(d)}} for d in dispenses]
    return out


def dispense(conv: Converter, r4: Resource, pharmacy: Resource) -> Resource:
    out: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "id": conv.include(r4),
        "meta": {"profile": [ITK + "CareConnect-ITK-MedicationDispense-1"]},
    }
    for name in (
        "identifier",
        "status",
        "medicationReference",
        "subject",
        "context",
        "authorizingPrescription",
    ):
        if name in r4:
            out[name] = conv.value(r4[name])
    out["performer"] = [
        {"actor": conv.value(p["actor"]), "onBehalfOf": {"reference": conv.urn(pharmacy)}}
        for p in r4.get("performer") or []
        if p.get("actor")
    ]
    if r4.get("type"):
        out["type"] = conv.value(r4["type"])
    if r4.get("quantity"):
        q = conv.value(r4["quantity"])
        if any(e.get("url") == QUANTITY_TEXT for e in q.get("extension") or []):
            pass  # the pharmacy's own words for the quantity
        elif q.get("value") is not None and q.get("unit"):
            text = (
                f"{q['value']:g} {q['unit']}"
                if isinstance(q["value"], float)
                else f"{q['value']} {q['unit']}"
            )
            q = {"extension": [{"url": QUANTITY_TEXT, "valueString": text}], **q}
        out["quantity"] = q
    for name in ("daysSupply", "whenPrepared", "whenHandedOver", "note", "dosageInstruction"):
        if name in r4:
            out[name] = conv.value(r4[name])
    return out


def medication(conv: Converter, r4: Resource) -> Resource:
    out: Resource = {
        "resourceType": "Medication",
        "id": conv.include(r4),
        "meta": {"profile": [ITK + "CareConnect-ITK-Medication-1"]},
    }
    for name in ("code", "status", "form"):
        if name in r4:
            out[name] = conv.value(r4[name])
    return out


def medications_section(list_id: str, dispenses: list[Resource], medications: list[Resource]) -> Section:
    rows: list[list[tuple[str, str | list[str]]]] = []
    for d, m in zip(dispenses, medications, strict=True):
        dosage = (d.get("dosageInstruction") or [{}])[0]
        directions = dosage.get("text") or ("As needed" if dosage.get("asNeededBoolean") else "")
        q, days = d.get("quantity") or {}, d.get("daysSupply") or {}
        rows += [
            [("Medication", sections.display(m.get("code")))],
            [("Dose directions", str(directions))],
            [("Quantity Supplied", f"{q.get('value', '')} {q.get('unit', '')}".strip())],
            [("Days Supply", f"{days.get('value', '')} days" if days else "")],
        ]
    return Section(
        "Medications and medical devices",
        coding(SNOMED, "933361000000108", "Medications and medical devices"),
        rows,
        ["urn:uuid:" + list_id],
    )
