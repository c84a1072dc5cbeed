"""The Composition sections every Digital Medicine document has (contacts with professionals, legal
information, GP practice, patient demographics), and the narrative's date formats.

The narrative is generated from the structured data, never carried over from elsewhere: a GP reads
it, so it must say what the coded entries say. (The shared examples' narratives disagree with their
own entries in places, e.g. an 11-digit NHS Number; the tests compare everything else element for
element and check the narrative's facts separately.)
"""

from __future__ import annotations

from datetime import date, datetime

from gpnotify.itk import SNOMED, Section, coding
from gpnotify.r4 import ODS_ORG, Practice, Related, Resource, human_name, identifier_value
from gpnotify.stu3 import Converter

SECTION_CODES = "https://fhir.nhs.uk/CodeSystem/SectionCode"


def when(value: str | None) -> str:
    """``2020-12-01T10:08:15+01:00`` → ``01-Dec-2020 10:08`` (the examples' contact time), as recorded:
    the clock time the pharmacist saw, not converted to another zone."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return parsed.strftime("%d-%b-%Y %H:%M") if "T" in value else parsed.strftime("%d-%b-%Y")


def birth_date(value: str | None) -> str:
    if not value:
        return ""
    try:
        d = date.fromisoformat(value)
    except ValueError:
        return value
    return f"{d.day} {d.strftime('%B %Y')}"


def display(concept: dict | None) -> str:
    """A CodeableConcept's text, else its first coding's display."""
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return ""


def practice_organization(practice: Practice) -> Resource:
    """The practice as an R4 Organization to convert: the stored one, or one made from the ODS code
    and name of a logical ``generalPractitioner`` reference (its id is the ODS code: stable)."""
    if practice.organization is not None:
        return practice.organization
    org: Resource = {
        "resourceType": "Organization",
        "id": f"ods-{practice.ods}",
        "identifier": [{"system": ODS_ORG, "value": practice.ods}],
    }
    if practice.name:
        org["name"] = practice.name
    return org


def contacts(conv: Converter, encounter: Resource) -> Section:
    start = (encounter.get("period") or {}).get("start")
    return Section(
        "Contacts with professionals",
        coding(SECTION_CODES, "contacts-with-professionals", "Contacts with professionals"),
        [[("Date and time of contact", when(start))]],
        [conv.urn(encounter)],
    )


def legal(consent: Resource | None) -> Section | None:
    """Consent, when the pharmacy recorded it (an R4 Consent about the patient): narrative only, as in
    the examples; STU3 ITK documents carry no Consent entry."""
    if consent is None:
        return None
    text = display((consent.get("category") or [None])[0]) or display(consent.get("scope"))
    return Section(
        "Legal information",
        coding(SNOMED, "886961000000102", "Legal information"),
        [[("Consent for treatment record", text)]],
    )


def gp_practice(conv: Converter, practice: Practice, org: Resource, title: str = "GP practice") -> Section:
    rows: list[list[tuple[str, str | list[str]]]] = [
        [("GP practice identifier", [f"ODS Organization Code: {practice.ods}"])]
    ]
    if practice.name or org.get("name"):
        rows.append([("GP practice details", [f"Name: {practice.name or org.get('name')}"])])
    return Section(title, coding(SNOMED, "886711000000101", "GP practice"), rows, [conv.urn(org)])


def demographics(
    conv: Converter, patient: Resource, nhs_number: str, title: str = "Patient demographics"
) -> Section:
    family, given = human_name(patient)
    rows: list[list[tuple[str, str | list[str]]]] = [
        [("Patient name", [f"Given Name: {given}", f"Family Name: {family.title()}"])],
        [("Date of birth", birth_date(patient.get("birthDate")))],
        [("Sex", str(patient.get("gender") or "unknown").title())],
        [("NHS number", nhs_number)],
    ]
    postcodes = [a["postalCode"] for a in patient.get("address") or [] if a.get("postalCode")]
    if postcodes:
        rows.append([("Patient address", [f"Post Code: {postcodes[0]}"])])
    return Section(
        title,
        coding(SNOMED, "886731000000109", "Patient demographics"),
        rows,
        [conv.urn(patient)],
    )


def consent_for(patient: Resource, related: Related) -> Resource | None:
    """The patient's active Consent among the related resources, if the pharmacy recorded one."""
    for r in related.by_key.values():
        if r.get("resourceType") != "Consent" or r.get("status") != "active":
            continue
        target = related.get(r.get("patient"), "Patient")
        if target is not None and target.get("id") == patient.get("id"):
            return r
    return None


def practitioner_id(practitioner: Resource) -> tuple[str, str]:
    """(label, value) of the professional identifier the narrative shows (NMC, GMC, GPhC)."""
    for label, system in (
        ("NMC identifier", "https://fhir.hl7.org.uk/Id/nmc-number"),
        ("GPhC identifier", "https://fhir.hl7.org.uk/Id/gphc-number"),
        ("GMC identifier", "https://fhir.hl7.org.uk/Id/gmc-number"),
    ):
        value = identifier_value(practitioner, system)
        if value:
            return label, value
    return "", ""


def carried(record: Resource | None, code: str) -> Section | None:
    """A narrative-only section the pharmacist wrote (history, advice given, plan, referral details):
    the section with this SNOMED ``code`` of the pharmacy's own R4 Composition of the consultation.
    The ITK documents carry these as narrative with no entries, so nothing is coded that was not."""
    for section in (record or {}).get("section") or []:
        codings = (section.get("code") or {}).get("coding") or []
        if any(c.get("system") == SNOMED and c.get("code") == code for c in codings):
            text = section.get("text") or {}
            return Section(
                str(section.get("title") or ""),
                {k: str(v) for k, v in codings[0].items() if k in ("system", "code", "display")},
                [],
                div=str(text.get("div") or ""),
                status=str(text.get("status") or "additional"),
            )
    return None


def consultation_record(encounter: Resource, related: Related) -> Resource | None:
    """The pharmacy's R4 Composition of this consultation (its ``encounter``), if it stored one."""
    for r in related.by_key.values():
        if r.get("resourceType") != "Composition":
            continue
        target = related.get(r.get("encounter"), "Encounter")
        if target is not None and target.get("id") == encounter.get("id"):
            return r
    return None
