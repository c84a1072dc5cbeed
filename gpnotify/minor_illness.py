"""ITK013D: a minor illness referral consultation (CPCS: NHS 111 refers a patient to the pharmacy),
from the stored R4 ``Encounter`` of the consultation.

Why the Encounter: it is what a pharmacy system stores for a consultation, and everything clinical
about it points at it or from it, so one read finds the whole notification:

- the **referral** is the R4 ``ServiceRequest`` in ``Encounter.basedOn`` (R4's ReferralRequest): STU3
  ``ReferralRequest``; R4's single ``requester`` (the call handler's PractitionerRole) becomes STU3's
  ``requester.agent``, and its ``organization`` the ``onBehalfOf`` (the NHS 111 service);
- the **presenting complaint** is the ``Condition`` in ``Encounter.reasonReference``: STU3 Condition,
  ``clinicalStatus``/``verificationStatus`` from CodeableConcept to code;
- **observations** (blood pressure, heart rate) are the ``Observation``s whose ``encounter`` is it:
  STU3 Observation (``encounter`` → ``context``), on the CareConnect vital-sign profile its LOINC code names;
- **medicines** handed over are the ``MedicationDispense``s whose ``context`` is it (``gpnotify.dispensing``);
- the pharmacist's free text (history, clinical summary) is the pharmacy's R4 ``Composition`` of it.

The Digital Medicines specification has retired this use case (release 1.2.9); the builder exists
because issue 14 asks for it and GP systems may still accept it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from gpnotify import sections, stu3
from gpnotify.dispensing import dispense, dispensed_list, medication, medications_section
from gpnotify.itk import (
    SNOMED,
    ItkMessage,
    Kind,
    Section,
    Sender,
    coding,
    document_bundle,
    message_bundle,
    message_id_for,
)
from gpnotify.itk import composition as make_composition
from gpnotify.r4 import Related, Resource, gp_practice, missing, nhs_number
from gpnotify.stu3 import CARECONNECT, ITK, Converter

MINOR_ILLNESS = Kind(
    name="minor-illness-referral",
    event="ITK013D",
    event_display="ITK Digital Medicine Minor Illness Referral Consultation Document",
    message_definition="https://fhir.nhs.uk/STU3/MessageDefinition/ITK-DM-MIRC-MessageDefinition-1",
    workflow_id="DIGMED_MINOR_ILLNESS_PEM",
    composition_profile=ITK + "CareConnect-ITK-DM-DMIRS-Composition-1",
    document_type=("1577041000000109", "Community Pharmacist Consultation Service for minor illness"),
)
TITLE = "Community Pharmacist Minor Illness Referral Consultation Service"
HISTORY, CLINICAL_SUMMARY = "717121000000105", "887181000000106"
VITAL_SIGN_PROFILES = {
    "85354-9": "CareConnect-BloodPressure-Observation-1",
    "8867-4": "CareConnect-HeartRate-Observation-1",
}


def build_minor_illness_referral(
    encounter: Resource, related: list[Resource], sender: Sender, *, now: datetime | None = None
) -> ItkMessage:
    """The ITK013D message for a finished consultation Encounter that an NHS 111 referral started.

    ``related``: the stored R4 resources around it (Patient, practice, Practitioners, PractitionerRole,
    Organizations, ServiceRequest, Conditions, Observations, MedicationDispenses, Medications, Consent,
    the pharmacy's Composition). Raises ``FhirError`` (422) when something required is missing."""
    if encounter.get("status") != "finished":
        raise missing(
            f"the consultation is not finished (status {encounter.get('status')!r})", "Encounter.status"
        )
    rel = Related.of([encounter, *related])  # with the focus: what points at it is found by resolving
    patient = rel.require(encounter.get("subject"), "Patient", "Encounter.subject")
    nhs = nhs_number(patient)
    practice = gp_practice(patient, rel)
    practice_org = sections.practice_organization(practice)
    referral = next(
        (r for r in (rel.get(b, "ServiceRequest") for b in encounter.get("basedOn") or []) if r), None
    )
    if referral is None:
        raise missing(
            "the consultation names no stored referral (a ServiceRequest in basedOn)", "Encounter.basedOn"
        )
    role = rel.get(referral.get("requester"), "PractitionerRole")
    caller = rel.get((role or {}).get("practitioner"), "Practitioner")
    referrer_org = rel.get((role or {}).get("organization"), "Organization")
    pharmacy = rel.require(encounter.get("serviceProvider"), "Organization", "Encounter.serviceProvider")
    performers = [p.get("individual") for p in encounter.get("participant") or []]
    pharmacist = next((r for r in (rel.get(p, "Practitioner") for p in performers) if r), None)
    if pharmacist is None:
        raise missing(
            "the consultation names no stored pharmacist (participant.individual)", "Encounter.participant"
        )
    conditions = [c for c in (rel.get(r, "Condition") for r in encounter.get("reasonReference") or []) if c]
    observations = _pointing_at(rel, encounter, "Observation", "encounter")
    dispenses = _pointing_at(rel, encounter, "MedicationDispense", "context")
    medications = [rel.require(d.get("medicationReference"), "Medication", "MedicationDispense.medication")
                   for d in dispenses]  # fmt: skip

    message_id = message_id_for(sender.ods, encounter)
    conv = Converter(message_id, rel)
    common = [r for r in (role, caller, referrer_org) if r is not None]
    common += [patient, practice_org, encounter, pharmacy, pharmacist]
    for r in [referral, *common, *conditions, *dispenses, *medications, *observations]:
        conv.include(r)
    list_id = str(uuid.uuid5(uuid.UUID(message_id), "dispensed-list"))
    if practice.organization is None:
        patient_out = {
            **patient,
            "generalPractitioner": [{"reference": f"Organization/{practice_org['id']}"}],
        }
    else:
        patient_out = patient

    entries: list[Resource] = [referral_request(conv, referral, role)]
    entries += [stu3.CONVERTERS[r["resourceType"]](conv, patient_out if r is patient else r) for r in common]
    entries += [condition(conv, c) for c in conditions]
    if dispenses:
        entries.append(dispensed_list(conv, list_id, dispenses[0], dispenses))
        entries += [dispense(conv, d, pharmacy) for d in dispenses]
        entries += [medication(conv, m) for m in medications]
    entries += [observation(conv, o) for o in observations]

    record = sections.consultation_record(encounter, rel)
    section_list = [
        referrer(conv, referral, caller, referrer_org),
        sections.demographics(conv, patient, nhs, title="Patient Demographics"),
        sections.legal(sections.consent_for(patient, rel)),
        sections.gp_practice(conv, practice, practice_org, title="GP Practice"),
        sections.contacts(conv, encounter),
        sections.carried(record, HISTORY),
        sections.carried(record, CLINICAL_SUMMARY),
        complaints(conv, conditions) if conditions else None,
        medications_section(list_id, dispenses, medications) if dispenses else None,
        vital_signs(conv, observations) if observations else None,
    ]
    comp = make_composition(
        MINOR_ILLNESS,
        conv,
        subject=patient,
        encounter=encounter,
        author=pharmacist,
        custodian=pharmacy,
        title=f"{pharmacy.get('name') or 'Pharmacy'} {TITLE}",
        sections=[s for s in section_list if s is not None],
        now=now,
    )
    document = document_bundle(message_id, [comp, *(stu3.drop_empty(e) for e in entries)], now)
    bundle = message_bundle(MINOR_ILLNESS, message_id, sender, practice.ods, document, now)
    return ItkMessage(MINOR_ILLNESS, message_id, practice.ods, bundle)


def _pointing_at(rel: Related, encounter: Resource, kind: str, element: str) -> list[Resource]:
    """The stored ``kind`` resources whose ``element`` refers to this encounter, in a stable order."""
    found = [r for r in rel.by_key.values() if r.get("resourceType") == kind
             and (rel.get(r.get(element), "Encounter") or {}).get("id") == encounter.get("id")]  # fmt: skip
    return found


def referral_request(conv: Converter, r4: Resource, role: Resource | None) -> Resource:
    out: dict[str, Any] = {
        "resourceType": "ReferralRequest",
        "id": conv.include(r4),
        "meta": {"profile": [CARECONNECT + "CareConnect-ReferralRequest-1"]},
    }
    for name in ("identifier", "status", "intent", "priority", "subject", "authoredOn", "reasonCode", "note"):
        if name in r4:
            out[name] = conv.value(r4[name])
    if out.get("status") == "revoked":
        out["status"] = "cancelled"  # R4 renamed it
    if r4.get("requester"):
        requester: dict[str, Any] = {"agent": conv.value(r4["requester"])}
        org = (role or {}).get("organization")
        if org:
            requester["onBehalfOf"] = conv.value(org)
        out["requester"] = requester
    return out


def condition(conv: Converter, r4: Resource) -> Resource:
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": conv.include(r4),
        "meta": {"profile": [ITK + "CareConnect-ITK-Condition-1"]},
    }
    for name in ("clinicalStatus", "verificationStatus"):  # CodeableConcept in R4, code in STU3
        codings = (r4.get(name) or {}).get("coding") or []
        if codings and codings[0].get("code"):
            out[name] = codings[0]["code"]
    for name in (
        "category",
        "severity",
        "code",
        "bodySite",
        "subject",
        "onsetDateTime",
        "onsetString",
        "note",
    ):
        if name in r4:
            out[name] = conv.value(r4[name])
    return out


def observation(conv: Converter, r4: Resource) -> Resource:
    loinc = {
        c.get("code")
        for c in (r4.get("code") or {}).get("coding") or []
        if c.get("system") == "http://loinc.org"
    }
    profile = next(
        (VITAL_SIGN_PROFILES[c] for c in loinc if c in VITAL_SIGN_PROFILES), "CareConnect-Observation-1"
    )
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": conv.include(r4),
        "meta": {"profile": [CARECONNECT + profile]},
    }
    for name in ("status", "category", "code", "subject"):
        if name in r4:
            out[name] = conv.value(r4[name])
    if r4.get("encounter"):
        out["context"] = conv.value(r4["encounter"])
    for name in (
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "performer",
        "valueQuantity",
        "valueString",
    ):
        if name in r4:
            out[name] = conv.value(r4[name])
    for name in (
        "valueCodeableConcept",
        "interpretation",
        "bodySite",
        "method",
        "referenceRange",
        "component",
    ):
        if name in r4:
            out[name] = conv.value(r4[name])
    if r4.get("note"):
        out["comment"] = "; ".join(str(n.get("text", "")) for n in r4["note"])
    return out


def referrer(conv: Converter, referral: Resource, caller: Resource | None, org: Resource | None) -> Section:
    rows: list[list[tuple[str, str | list[str]]]] = []
    if org is not None:
        rows.append([("Referring organisation", str(org.get("name") or ""))])
    if caller is not None:
        rows.append([("Referrer", stu3.display_of(caller))])
    rows.append([("Referred on", sections.when(referral.get("authoredOn")))])
    reasons = [sections.display(r) for r in referral.get("reasonCode") or []]
    if reasons:
        rows.append([("Reason for referral", ", ".join(reasons))])
    return Section(
        "Referrer Details", coding(SNOMED, "1052891000000108", "Referrer details"), rows, [conv.urn(referral)]
    )


def complaints(conv: Converter, conditions: list[Resource]) -> Section:
    rows: list[list[tuple[str, str | list[str]]]] = [
        [
            ("Presenting complaint", sections.display(c.get("code"))),
            ("Onset", str(c.get("onsetString") or "")),
        ]
        for c in conditions
    ]
    return Section(
        "Presenting complaints or issues",
        coding(SNOMED, "886891000000102", "Presenting complaints or issues"),
        rows,
        [conv.urn(c) for c in conditions],
    )


def vital_signs(conv: Converter, observations: list[Resource]) -> Section:
    rows: list[list[tuple[str, str | list[str]]]] = []
    for o in observations:
        parts = [o.get("valueQuantity") or {}] + [
            c.get("valueQuantity") or {} for c in o.get("component") or []
        ]
        values = "/".join(str(q["value"]) for q in parts if "value" in q)
        unit = next((q.get("unit") for q in parts if q.get("unit")), "")
        rows.append([(sections.display(o.get("code")), f"{values} {unit}".strip())])
    return Section(
        "Observations",
        coding(SNOMED, "1102421000000108", "Observations"),
        rows,
        [conv.urn(o) for o in observations],
        status="generated",
    )
