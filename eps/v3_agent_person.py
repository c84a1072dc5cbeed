"""The prescriber: the requester PractitionerRole as EPS's ``AgentPerson`` signature fragment.

AgentPerson = role profile id, job role code, telecoms, the person (professional code, name) and
the represented organisation (the cost centre: a HealthcareService when the role names one,
else the Organization) with its ``healthCareProviderLicense`` (the organisation's parent, from
``partOf``, or the organisation itself). EPS builds the responsible party the same way, but only
the author's AgentPerson is signed, so only that is built here.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from eps import _v3
from eps._fhir import (
    Message,
    concept_codings,
    identifier_value,
    identifier_value_or_none,
    invalid,
    is_reference,
    obj,
    objs,
    only,
    only_or_none,
    text,
)
from eps.v3_demographics import address, name, telecom

_ODS_ORGANIZATION = "https://fhir.nhs.uk/Id/ods-organization-code"
_ROLE_PROFILE = "https://fhir.nhs.uk/Id/sds-role-profile-id"
_JOB_ROLE_SYSTEMS = (
    "https://fhir.nhs.uk/CodeSystem/NHSDigital-SDS-JobRoleCode",
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName",
)
# the author's professional code, in the order EPS looks for it; exactly one must be present
_PROFESSIONAL_CODE_SYSTEMS = (
    "https://fhir.hl7.org.uk/Id/gmc-number",
    "https://fhir.hl7.org.uk/Id/gmp-number",
    "https://fhir.hl7.org.uk/Id/nmc-number",
    "https://fhir.hl7.org.uk/Id/gphc-number",
    "https://fhir.hl7.org.uk/Id/hcpc-number",
    "https://fhir.hl7.org.uk/Id/professional-code",
)
_NOT_SPECIFIED = "999"  # EPS always sends organisation type "not specified" (its ticket AEA-2493)


def _one(value: object, path: str) -> dict[str, Any]:
    """EPS ``onlyElement`` over an optional array: absent is "Required field missing."."""
    if value is None:
        raise invalid("Required field missing.", path)
    found: dict[str, Any] = only(objs(value, path), path)
    return found


def _practitioner(message: Message, role: dict[str, Any]) -> dict[str, Any] | None:
    reference = role.get("practitioner")
    if not reference:
        return None
    if is_reference(reference):
        return message.resolve(reference, "PractitionerRole.practitioner", "Practitioner")
    # an identifier reference stands for a Practitioner with that identifier and display name
    ref = obj(reference, "PractitionerRole.practitioner")
    return {
        "resourceType": "Practitioner",
        "identifier": [obj(ref.get("identifier"), "PractitionerRole.practitioner.identifier")],
        "name": [{"text": ref.get("display")}],
    }


def _organization(message: Message, role: dict[str, Any]) -> dict[str, Any]:
    reference = obj(role.get("organization"), "PractitionerRole.organization")
    if is_reference(reference):
        return message.resolve(reference, "PractitionerRole.organization", "Organization")
    locations = objs(role.get("location"), "PractitionerRole.location")
    return {
        "resourceType": "Organization",
        "identifier": [obj(reference.get("identifier"), "PractitionerRole.organization.identifier")],
        "name": reference.get("display"),
        "telecom": role.get("telecom"),
        "address": [
            message.resolve(location, "PractitionerRole.location", "Location").get("address")
            for location in locations
        ],
    }


def _healthcare_service(message: Message, role: dict[str, Any]) -> dict[str, Any] | None:
    services = role.get("healthcareService")
    if services is None:
        return None
    listed = objs(services, "PractitionerRole.healthcareService")
    if not listed:
        raise invalid("Required field missing.", "PractitionerRole.healthcareService")
    first = listed[0]
    if is_reference(first):
        return message.resolve(first, "PractitionerRole.healthcareService", "HealthcareService")
    return {
        "resourceType": "HealthcareService",
        "identifier": [obj(first.get("identifier"), "PractitionerRole.healthcareService.identifier")],
        "name": first.get("display"),
        "telecom": role.get("telecom"),
        "location": role.get("location"),
    }


def _telecom_source(
    role: dict[str, Any], practitioner: dict[str, Any] | None, organization: dict[str, Any]
) -> tuple[list[dict[str, Any]], str]:
    """The role's own telecoms, else the practitioner's (a real one) or else the organisation's."""
    if role.get("telecom") is not None:
        return objs(role.get("telecom"), "PractitionerRole.telecom"), "PractitionerRole.telecom"
    if is_reference(role.get("practitioner")):
        secondary, path = (practitioner or {}).get("telecom"), "Practitioner.telecom"
    else:
        secondary, path = organization.get("telecom"), "Organization.telecom"
    if secondary is None:
        raise invalid("ResponsiblePractitioner must have at least one telecom.", "PractitionerRole.telecom")
    return objs(secondary, path), path


def job_role_code(role: dict[str, Any]) -> str | None:
    codings = concept_codings(role.get("code"), "PractitionerRole.code")
    for system in _JOB_ROLE_SYSTEMS:
        matching = [c for c in codings if c.get("system") == system]
        coding = only_or_none(matching, "PractitionerRole.code.coding", f"system == '{system}'")
        if coding is not None:
            value = coding.get("code")
            return None if value is None else str(value)
    raise invalid(
        "Too few values submitted. Expected at least 1 element where system in "
        f"[{', '.join(_JOB_ROLE_SYSTEMS)}].",
        "PractitionerRole.code",
    )


def professional_code(practitioner: dict[str, Any]) -> str:
    identifiers = practitioner.get("identifier")
    codes: list[str] = []
    for system in _PROFESSIONAL_CODE_SYSTEMS:
        value = identifier_value_or_none(identifiers, system, "Practitioner.identifier")
        if not value:
            continue
        if system.endswith("gmc-number") and value.upper().startswith("C"):
            value = value[1:]  # GMC numbers are sent without their "C" prefix
        codes.append(value)
    if len(codes) == 1:
        return codes[0]
    got = f"But got: {', '.join(codes)}" if codes else ""
    raise invalid(
        f"Expected exactly one professional code. One of GMC|GMP|NMC|GPhC|HCPC|unknown. {got}",
        "Practitioner.identifier",
    )


def _organization_details(parent: etree._Element, tag: str, source: dict[str, Any]) -> etree._Element:
    """id, type code and name: what a represented organisation and its parent share."""
    kind = source.get("resourceType", "Organization")
    element = _v3.sub(parent, tag, {"classCode": "ORG", "determinerCode": "INSTANCE"})
    ods = identifier_value(source.get("identifier"), _ODS_ORGANIZATION, f"{kind}.identifier")
    _v3.identifier(element, "id", _v3.SDS_ORGANIZATION, ods)
    _v3.code(element, "code", _v3.ORGANIZATION_TYPE, _NOT_SPECIFIED)
    org_name = source.get("name")
    if not org_name:
        raise invalid("Name must be provided.", f"{kind}.name")
    _v3.sub(element, "name", text=text(org_name, f"{kind}.name"))
    return element


def _cost_centre_address(message: Message, cost_centre: dict[str, Any]) -> tuple[object, str]:
    if cost_centre.get("resourceType") == "HealthcareService":
        location_ref = _one(cost_centre.get("location"), "HealthcareService.location")
        location = message.resolve(location_ref, "HealthcareService.location", "Location")
        if not location.get("address"):
            raise invalid("Address must be provided.", "Location.address")
        return location.get("address"), "Location.address"
    return _one(cost_centre.get("address"), "Organization.address"), "Organization.address"


def _parent_organization(message: Message, organization: dict[str, Any]) -> dict[str, Any]:
    part_of = organization.get("partOf")
    if not part_of:
        return organization
    if is_reference(part_of):
        return message.resolve(part_of, "Organization.partOf", "Organization")
    ref = obj(part_of, "Organization.partOf")
    return {
        "resourceType": "Organization",
        "identifier": [obj(ref.get("identifier"), "Organization.partOf.identifier")],
        "name": ref.get("display"),
    }


def represented_organization(
    message: Message, parent: etree._Element, organization: dict[str, Any], service: dict[str, Any] | None
) -> etree._Element:
    cost_centre = service if service is not None else organization
    kind = cost_centre.get("resourceType", "Organization")
    element = _organization_details(parent, "representedOrganization", cost_centre)
    telecom(element, _one(cost_centre.get("telecom"), f"{kind}.telecom"), f"{kind}.telecom")
    addr, addr_path = _cost_centre_address(message, cost_centre)
    address(element, addr, addr_path)
    licence = _v3.sub(element, "healthCareProviderLicense", {"classCode": "PROV"})
    _organization_details(licence, "Organization", _parent_organization(message, organization))
    return element


def agent_person(message: Message, role: dict[str, Any]) -> etree._Element:
    """The author's ``<AgentPerson>`` fragment (V3 namespace on the element, as EPS signs it)."""
    practitioner = _practitioner(message, role)
    organization = _organization(message, role)
    telecoms, telecom_path = _telecom_source(role, practitioner, organization)
    element = _v3.root("AgentPerson", {"classCode": "AGNT"})
    if role.get("identifier"):
        role_profile = identifier_value(role.get("identifier"), _ROLE_PROFILE, "PractitionerRole.identifier")
        _v3.identifier(element, "id", _v3.SDS_ROLE_PROFILE, role_profile)
    if role.get("code"):
        _v3.code(element, "code", _v3.SDS_JOB_ROLE, job_role_code(role))
    for contact_point in telecoms:
        telecom(element, contact_point, telecom_path)
    if practitioner is not None:
        person = _v3.sub(element, "agentPerson", {"classCode": "PSN", "determinerCode": "INSTANCE"})
        _v3.identifier(person, "id", _v3.AGENT_PERSON_ID, professional_code(practitioner))
        if practitioner.get("name") is not None:
            name(person, _one(practitioner.get("name"), "Practitioner.name"), "Practitioner.name")
    represented_organization(message, element, organization, _healthcare_service(message, role))
    return element
