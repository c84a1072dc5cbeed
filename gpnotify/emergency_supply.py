"""ITK010D: medicines supplied in an emergency without a prescription, from stored R4 ``MedicationDispense``s.

What marks an emergency supply: ``MedicationDispense.type`` coded SNOMED CT 1218611000000102 "Urgent
supply of prescription items by community pharmacy", the concept the Digital Medicines specification
uses for the document type and for each dispense's type (the shared example). One consultation is one
notification: every emergency-supply dispense of one Encounter (``context``) goes in one message, as
in the example (an insulin and its needles), so the pharmacy system stores them with a shared context.

R4 → STU3 (CareConnect-ITK-MedicationDispense-1):

the dispenses, their List and Medications as ``gpnotify.dispensing`` says (shared with ITK013D).

The custodian is the pharmacy (the example's choice for this document; the immunisation example names
the practice). Narrative-only sections (history, advice given, plan, referral details) are the
pharmacist's words: they come from the pharmacy's own R4 Composition of the consultation, if stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from gpnotify import sections, stu3
from gpnotify.dispensing import dispense, dispensed_list, medication, medications_section
from gpnotify.itk import (
    NAMESPACE,
    SNOMED,
    ItkMessage,
    Kind,
    Sender,
    document_bundle,
    message_bundle,
)
from gpnotify.itk import composition as make_composition
from gpnotify.r4 import Related, Resource, gp_practice, missing, nhs_number
from gpnotify.stu3 import ITK, Converter

EMERGENCY_SUPPLY_TYPE = ("1218611000000102", "Urgent supply of prescription items by community pharmacy")
EMERGENCY_SUPPLY = Kind(
    name="emergency-supply",
    event="ITK010D",
    event_display="ITK Digital Medicine Emergency Supply Document",
    message_definition="https://fhir.nhs.uk/STU3/MessageDefinition/ITK-DM-EmergencySupply-MessageDefinition-1",
    workflow_id="DIGMED_EMG_MED",
    composition_profile=ITK + "CareConnect-ITK-DM-EmergencySupply-Composition-1",
    document_type=EMERGENCY_SUPPLY_TYPE,
)
HISTORY, ADVICE, PLAN, REFERRAL = "717121000000105", "1052951000000105", "887201000000105", "886721000000107"


def is_emergency_supply(dispense: Resource) -> bool:
    codings = (dispense.get("type") or {}).get("coding") or []
    return any(c.get("system") == SNOMED and c.get("code") == EMERGENCY_SUPPLY_TYPE[0] for c in codings)


def build_emergency_supply(
    dispenses: list[Resource], related: list[Resource], sender: Sender, *, now: datetime | None = None
) -> ItkMessage:
    """The ITK010D message for the completed emergency-supply dispenses of one consultation.

    ``related``: the stored R4 resources they refer to (Patient, practice, Practitioners, Encounter, its
    serviceProvider, Medications, the patient's Consent, the pharmacy's Composition of the consultation).
    Raises ``FhirError`` (422, with an expression) when something required is missing: nothing built."""
    if not dispenses:
        raise missing("no MedicationDispense to notify", "MedicationDispense")
    for d in dispenses:
        if not is_emergency_supply(d):
            raise missing(
                f"MedicationDispense/{d.get('id')} is not an emergency supply (type must be SNOMED CT "
                f"{EMERGENCY_SUPPLY_TYPE[0]} {EMERGENCY_SUPPLY_TYPE[1]})",
                "MedicationDispense.type",
            )
        if d.get("status") != "completed":
            raise missing(f"MedicationDispense/{d.get('id')} is not completed", "MedicationDispense.status")
    rel = Related.of(related)
    first = dispenses[0]
    patient = rel.require(first.get("subject"), "Patient", "MedicationDispense.subject")
    encounter = rel.require(first.get("context"), "Encounter", "MedicationDispense.context")
    for d in dispenses[1:]:
        if rel.get(d.get("subject"), "Patient") is not patient or rel.get(d.get("context")) is not encounter:
            raise _other_consultation(d)
    nhs = nhs_number(patient)
    practice = gp_practice(patient, rel)
    practice_org = sections.practice_organization(practice)
    pharmacy = rel.require(encounter.get("serviceProvider"), "Organization", "Encounter.serviceProvider")
    pharmacist = rel.require(
        ((first.get("performer") or [{}])[0]).get("actor"),
        "Practitioner",
        "MedicationDispense.performer[0].actor",
    )
    medications = [rel.require(d.get("medicationReference"), "Medication", "MedicationDispense.medication")
                   for d in dispenses]  # fmt: skip

    message_id = _message_id(sender.ods, dispenses)
    conv = Converter(message_id, rel)
    gps = [p for p in (rel.get(r, "Practitioner") for r in patient.get("generalPractitioner") or []) if p]
    ordered = [encounter, pharmacy, practice_org, patient, *gps, pharmacist]
    for r in [*ordered, *dispenses, *medications]:
        conv.include(r)
    list_id = str(uuid.uuid5(uuid.UUID(message_id), "dispensed-list"))
    if practice.organization is None:
        patient = {**patient, "generalPractitioner": [{"reference": f"Organization/{practice_org['id']}"}]}

    entries: list[Resource] = [stu3.CONVERTERS[r["resourceType"]](conv, patient if r is ordered[3] else r)
                               for r in ordered]  # fmt: skip
    entries.append(dispensed_list(conv, list_id, first, dispenses))
    entries += [dispense(conv, d, pharmacy) for d in dispenses]
    entries += [medication(conv, m) for m in medications]

    record = sections.consultation_record(encounter, rel)
    section_list = [
        sections.contacts(conv, encounter),
        sections.legal(sections.consent_for(patient, rel)),
        sections.gp_practice(conv, practice, practice_org, title="GP Practice"),
        sections.carried(record, HISTORY),
        sections.carried(record, ADVICE),
        medications_section(list_id, dispenses, medications),
        sections.demographics(conv, patient, nhs, title="Patient Demographics"),
        sections.carried(record, PLAN),
        sections.carried(record, REFERRAL),
    ]
    comp = make_composition(
        EMERGENCY_SUPPLY,
        conv,
        subject=patient,
        encounter=encounter,
        author=pharmacist,
        custodian=pharmacy,
        title=f"{pharmacy.get('name') or 'Pharmacy'} Emergency Medication Supply Record",
        sections=[s for s in section_list if s is not None],
        now=now,
    )
    document = document_bundle(message_id, [comp, *(stu3.drop_empty(e) for e in entries)], now)
    bundle = message_bundle(EMERGENCY_SUPPLY, message_id, sender, practice.ods, document, now)
    return ItkMessage(EMERGENCY_SUPPLY, message_id, practice.ods, bundle)


def _other_consultation(d: Resource) -> Exception:
    return missing(
        f"MedicationDispense/{d.get('id')} belongs to another patient or consultation: one notification "
        "is one consultation (the same subject and context)",
        "MedicationDispense.context",
    )


def _message_id(sender_ods: str, dispenses: list[Resource]) -> str:
    """Stable per sender and the set of stored dispense versions (in any order)."""
    keys = sorted(f"{d['id']}/_history/{(d.get('meta') or {}).get('versionId') or '1'}" for d in dispenses)
    return str(uuid.uuid5(NAMESPACE, f"{sender_ods}|MedicationDispense|{','.join(keys)}"))
