"""ITK009D: an immunisation given at the pharmacy, from a completed R4 ``Immunization``.

R4 → STU3 (CareConnect-ITK-DM-Immunization-1), element by element:

- ``occurrenceDateTime`` → ``date``; ``recorded`` → the CareConnect DateRecorded extension;
- ``status`` completed → completed with ``notGiven`` false. Only a completed immunisation is
  notified: the GP records vaccinations given, and R4's not-done has no ITK009D meaning here;
- ``performer`` (function, actor) → ``practitioner`` (role, actor);
- ``reasonCode`` → ``explanation.reason``;
- ``protocolApplied`` → ``vaccinationProtocol`` (doseNumberPositiveInt → doseSequence, targetDisease,
  series, authority). STU3 requires ``doseStatus``, which R4 dropped: a completed administration in a
  protocol counts towards it, so it is "count" (http://hl7.org/fhir/vaccination-protocol-dose-status);
- the UK Core VaccinationProcedure extension → the CareConnect one.

The document's title is "<series> Immunization Record" when the protocol names its series (e.g.
"COVID-19"), else "Immunization Record": R4 has no other place for what the campaign is called.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gpnotify import sections, stu3
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

IMMUNISATION = Kind(
    name="immunisation",
    event="ITK009D",
    event_display="ITK Digital Medicine Immunization Document",
    message_definition="https://fhir.nhs.uk/STU3/MessageDefinition/ITK-DM-Immunization-MessageDefinition-1",
    workflow_id="DIGMED_FLU_VAC",
    composition_profile=ITK + "CareConnect-ITK-DM-Immunization-Composition-1",
    document_type=("41000179103", "Immunisation record"),
)
DOSE_STATUS = "http://hl7.org/fhir/vaccination-protocol-dose-status"
# elements STU3 names as R4 does, in STU3's order
SAME_NAME: tuple[str, ...] = (
    "vaccineCode",
    "patient",
    "encounter",
    "primarySource",
    "location",
    "manufacturer",
    "lotNumber",
)
SAME_NAME += ("expirationDate", "site", "route", "doseQuantity")


def build_immunisation(
    immunization: Resource, related: list[Resource], sender: Sender, *, now: datetime | None = None
) -> ItkMessage:
    """The ITK009D message for a stored, completed R4 Immunization.

    ``related``: the stored R4 resources it refers to (Patient, its practice Organization when stored,
    Practitioner, PractitionerRole, Encounter, Organizations, Location, the patient's Consent).
    Raises ``FhirError`` (422, with an expression) when a required element is missing: nothing built."""
    if immunization.get("status") != "completed":
        raise missing(
            f"only a completed Immunization is notified to the GP (status is {immunization.get('status')!r})",
            "Immunization.status",
        )
    rel = Related.of(related)
    patient = rel.require(immunization.get("patient"), "Patient", "Immunization.patient")
    nhs = nhs_number(patient)
    practice = gp_practice(patient, rel)
    practice_org = sections.practice_organization(practice)
    if "occurrenceDateTime" not in immunization:
        raise missing(
            "the Immunization has no occurrenceDateTime (when it was given)", "Immunization.occurrence"
        )
    performers = [p for p in immunization.get("performer") or [] if rel.get(p.get("actor"), "Practitioner")]
    if not performers:
        raise missing(
            "the Immunization names no stored Practitioner who gave it (performer.actor)",
            "Immunization.performer",
        )
    vaccinator = rel.require(performers[0]["actor"], "Practitioner", "Immunization.performer[0].actor")
    encounter = rel.get(immunization.get("encounter"), "Encounter")

    message_id = message_id_for(sender.ods, immunization)
    conv = Converter(message_id, rel)
    # the order of the shared example's document (the Composition comes first, made below)
    provider = rel.get((encounter or {}).get("serviceProvider"), "Organization")
    manufacturer = rel.get(immunization.get("manufacturer"), "Organization")
    place = rel.get(immunization.get("location"), "Location")
    roles = [r for r in rel.by_key.values() if r.get("resourceType") == "PractitionerRole"
             and rel.get(r.get("practitioner"), "Practitioner") is vaccinator]  # fmt: skip
    candidates = [
        encounter,
        practice_org,
        immunization,
        patient,
        vaccinator,
        provider,
        manufacturer,
        place,
        *roles,
    ]
    ordered = [r for r in candidates if r is not None]
    # every entry gets its uuid before any is converted, so references between them resolve
    for r in ordered:
        conv.include(r)
    if practice.organization is None:  # a logical reference by ODS code: point it at the entry made for it
        patient = {**patient, "generalPractitioner": [{"reference": f"Organization/{practice_org['id']}"}]}

    entries = [convert_immunization(conv, immunization) if r is immunization else _common(conv, r, patient)
               for r in ordered]  # fmt: skip
    section_list = [
        s
        for s in (
            sections.contacts(conv, encounter) if encounter is not None else None,
            sections.legal(sections.consent_for(patient, rel)),
            sections.gp_practice(conv, practice, practice_org),
            vaccinations(conv, immunization, vaccinator),
            sections.demographics(conv, patient, nhs),
        )
        if s is not None
    ]
    series = [p.get("series") for p in immunization.get("protocolApplied") or [] if p.get("series")]
    comp = make_composition(
        IMMUNISATION,
        conv,
        subject=patient,
        encounter=encounter,
        author=vaccinator,
        custodian=practice_org,
        title=f"{series[0]} Immunization Record" if series else "Immunization Record",
        sections=section_list,
        now=now,
    )
    document = document_bundle(message_id, [comp, *(stu3.drop_empty(e) for e in entries)], now)
    bundle = message_bundle(IMMUNISATION, message_id, sender, practice.ods, document, now)
    return ItkMessage(IMMUNISATION, message_id, practice.ods, bundle)


def _common(conv: Converter, r4: Resource, patient: Resource) -> Resource:
    if r4.get("resourceType") == "Patient":
        r4 = patient  # with the practice reference made concrete when it was a logical one
    return stu3.CONVERTERS[r4["resourceType"]](conv, r4)


def convert_immunization(conv: Converter, r4: Resource) -> Resource:
    out: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": conv.include(r4),
        "meta": {"profile": [ITK + "CareConnect-ITK-DM-Immunization-1"]},
    }
    ext = []
    if r4.get("recorded"):
        ext.append(
            {"url": CARECONNECT + "Extension-CareConnect-DateRecorded-1", "valueDateTime": r4["recorded"]}
        )
    ext += [
        conv.value(e)
        for e in r4.get("extension") or []
        if stu3.system(e.get("url", "")).startswith(CARECONNECT)
    ]
    if ext:
        out["extension"] = ext
    if r4.get("identifier"):
        out["identifier"] = conv.value(r4["identifier"])
    out["status"] = "completed"
    out["notGiven"] = False
    for r4_name in SAME_NAME:
        if r4_name in r4:
            out[r4_name] = conv.value(r4[r4_name])
    if "occurrenceDateTime" in r4:
        out["date"] = r4["occurrenceDateTime"]
    practitioners = []
    for p in r4.get("performer") or []:
        item: dict[str, Any] = {}
        if p.get("function"):
            item["role"] = conv.value(p["function"])
        item["actor"] = conv.value(p["actor"])
        practitioners.append(item)
    if practitioners:
        out["practitioner"] = practitioners
    if r4.get("note"):
        out["note"] = conv.value(r4["note"])
    if r4.get("reasonCode"):
        out["explanation"] = {"reason": conv.value(r4["reasonCode"])}
    protocols = []
    for p in r4.get("protocolApplied") or []:
        proto: dict[str, Any] = {}
        if "doseNumberPositiveInt" in p:
            proto["doseSequence"] = p["doseNumberPositiveInt"]
        if p.get("authority"):
            proto["authority"] = conv.value(p["authority"])
        if p.get("targetDisease"):
            proto["targetDisease"] = conv.value(p["targetDisease"])
        proto["doseStatus"] = {"coding": [coding(DOSE_STATUS, "count", "Counts")]}
        protocols.append(proto)
    if protocols:
        out["vaccinationProtocol"] = protocols
    return out


def vaccinations(conv: Converter, immunization: Resource, vaccinator: Resource) -> Section:
    """The Vaccinations section: product, procedure, route and indication; who gave it and when."""
    procedure = next(
        (sections.display(e.get("valueCodeableConcept")) for e in immunization.get("extension") or []
         if "VaccinationProcedure" in e.get("url", "")),
        "",
    )  # fmt: skip
    first: list[tuple[str, str | list[str]]] = [
        ("", f"Vaccine product: {sections.display(immunization.get('vaccineCode'))}")
    ]
    if procedure:
        first.append(("", f"Vaccine procedure: {procedure}"))
    if immunization.get("route"):
        first.append(("", f"Route: {sections.display(immunization['route'])}"))
    reasons = [sections.display(r) for r in immunization.get("reasonCode") or []]
    if reasons:
        first.append(("", "Indication: " + ", ".join(reasons)))
    family, given = (
        (vaccinator.get("name") or [{}])[0].get("family", ""),
        " ".join((vaccinator.get("name") or [{}])[0].get("given") or []),
    )
    second: list[tuple[str, str | list[str]]] = [("", f"Administered by: {given} {family.title()}".strip())]
    label, value = sections.practitioner_id(vaccinator)
    if value:
        second.append(("", f"{label}: {value}"))
    second.append(("", f"Date Time: {sections.when(immunization.get('occurrenceDateTime'))}"))
    return Section(
        "Vaccinations",
        coding(SNOMED, "1102181000000102", "Immunisations"),
        [first, second],
        [conv.urn(immunization)],
    )
