"""The patient: FHIR Patient -> EPS's ``recordTarget`` signature fragment.

recordTarget > Patient (NHS Number, addresses, telecoms) > patientPerson (names, gender, birth
date) > playedProviderPatient > subjectOf > patientCareProvision (primary care) >
responsibleParty > healthCareProvider (the registered GP practice, or EPS's "unknown GP" code).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from eps import _v3
from eps._dates import hl7_date
from eps._fhir import identifier_value, invalid, obj, objs, only, text
from eps.v3_demographics import address, name, telecom

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
UNKNOWN_GP_ODS_CODE = "V81999"  # what EPS sends when the patient has no registered GP
_SEX = {"male": "1", "female": "2", "other": "9", "unknown": "0"}
_PRIMARY_CARE = "1"


def nhs_number(patient: dict[str, Any]) -> str:
    return identifier_value(patient.get("identifier"), NHS_NUMBER_SYSTEM, "Patient.identifier")


def _gender(value: object) -> str:
    code = _SEX.get(value) if isinstance(value, str) else None
    if code is None:
        raise invalid(f"Unhandled gender '{value}'.", "Patient.gender")
    return code


def _gp_practice(patient: dict[str, Any]) -> str:
    practitioners = objs(patient.get("generalPractitioner"), "Patient.generalPractitioner")
    if not practitioners:
        return UNKNOWN_GP_ODS_CODE
    reference = only(practitioners, "Patient.generalPractitioner")
    identifier = obj(reference.get("identifier"), "Patient.generalPractitioner.identifier")
    return text(identifier.get("value"), "Patient.generalPractitioner.identifier.value")


def record_target(patient: dict[str, Any]) -> etree._Element:
    """The ``<recordTarget>`` fragment, V3 namespace on it as EPS signs it."""
    element = _v3.root("recordTarget", {"typeCode": "RCT"})
    v3_patient = _v3.sub(element, "Patient", {"classCode": "PAT"})
    _v3.identifier(v3_patient, "id", _v3.NHS_NUMBER, nhs_number(patient))
    if patient.get("address") is None:
        raise invalid("Required field missing.", "Patient.address")
    for fhir_address in objs(patient.get("address"), "Patient.address"):
        address(v3_patient, fhir_address, "Patient.address")
    for contact_point in objs(patient.get("telecom"), "Patient.telecom"):
        telecom(v3_patient, contact_point, "Patient.telecom")

    person = _v3.sub(v3_patient, "patientPerson", {"classCode": "PSN", "determinerCode": "INSTANCE"})
    if patient.get("name") is None:
        raise invalid("Required field missing.", "Patient.name")
    for human_name in objs(patient.get("name"), "Patient.name"):
        name(person, human_name, "Patient.name")
    _v3.code(person, "administrativeGenderCode", _v3.SEX, _gender(patient.get("gender")))
    _v3.sub(person, "birthTime", {"value": hl7_date(patient.get("birthDate"), "Patient.birthDate")})

    provider_patient = _v3.sub(person, "playedProviderPatient", {"classCode": "PAT"})
    subject_of = _v3.sub(provider_patient, "subjectOf", {"typeCode": "SBJ"})
    provision = _v3.sub(subject_of, "patientCareProvision", {"classCode": "PCPR", "moodCode": "EVN"})
    _v3.code(provision, "code", _v3.PATIENT_CARE_PROVISION_TYPE, _PRIMARY_CARE)
    responsible = _v3.sub(provision, "responsibleParty", {"typeCode": "RESP"})
    provider = _v3.sub(responsible, "healthCareProvider", {"classCode": "PROV"})
    _v3.identifier(provider, "id", _v3.SDS_ORGANIZATION, _gp_practice(patient))
    return element
