"""One MedicationRequest -> EPS's ``pertinentLineItem`` signature fragment.

A line item is: id, the fixed "administration of therapeutic substance" code, a null effective
time, the repeat ``high`` (repeat prescribing and dispensing only; EPS strips ``low`` and the
item status before signing), the product, the quantity, additional instructions (the first item
also carries the prescription's medication list and patient information), prescriber
endorsements and the dosage text. Element order is EPS's (endorsements before dosage).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from lxml import etree

from eps import _v3
from eps._fhir import (
    Message,
    coding_for_system,
    extension_or_none,
    identifier_value,
    invalid,
    obj,
    objs,
    only_or_none,
    opt_text,
    scalar,
    text,
)

ACUTE = "acute"
CONTINUOUS = "continuous"
REPEAT_DISPENSING = "continuous-repeat-dispensing"
COURSE_OF_THERAPY_CODES = (ACUTE, CONTINUOUS, REPEAT_DISPENSING)

_ITEM_NUMBER = "https://fhir.nhs.uk/Id/prescription-order-item-number"
_SNOMED_SYSTEM = "http://snomed.info/sct"
_ENDORSEMENT_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-DM-PrescriptionEndorsement"
_ENDORSEMENT_SYSTEM = "https://fhir.nhs.uk/CodeSystem/medicationrequest-endorsement"
_CONTROLLED_DRUG_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-DM-ControlledDrug"
_EPS_REPEAT_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-EPS-RepeatInformation"


def course_of_therapy(medication_requests: list[dict[str, Any]]) -> str:
    """The prescription's one course of therapy; acute and continuous items together count as acute."""
    codes: set[str] = set()
    for request in medication_requests:
        concept = obj(request.get("courseOfTherapyType"), "MedicationRequest.courseOfTherapyType")
        for coding in objs(concept.get("coding"), "MedicationRequest.courseOfTherapyType.coding"):
            codes.add(scalar(coding.get("code"), "MedicationRequest.courseOfTherapyType.coding.code"))
    if len(codes) == 1:
        course = next(iter(codes))
    elif codes == {ACUTE, CONTINUOUS}:
        course = ACUTE
    else:
        raise invalid(
            "Course of therapy type must either match for all MedicationRequests "
            f"or be a mixture of '{ACUTE}' and '{CONTINUOUS}'.",
            "MedicationRequest.courseOfTherapyType.coding",
        )
    if course not in COURSE_OF_THERAPY_CODES:
        raise invalid(
            f"Unhandled course of therapy type code '{course}'.",
            "MedicationRequest.courseOfTherapyType.coding.code",
        )
    return course


def _repeats_plus_one(value: object, path: str) -> str:
    """EPS's ``parseNumberOfRepeatsAllowed``: the count of issues is the repeats allowed plus one."""
    if isinstance(value, bool):
        raise invalid(f"Expected an integer at {path}.", path)
    if isinstance(value, int | Decimal | float):
        number = int(value)
    else:
        digits = scalar(value, path).strip()
        sign = -1 if digits.startswith("-") else 1
        digits = digits.lstrip("+-")
        prefix = digits[: len(digits) - len(digits.lstrip("0123456789"))]
        if not prefix:  # parseInt("x") is NaN, and NaN + 1 is written "NaN"
            raise invalid(f"Expected an integer at {path}.", path)
        number = sign * int(prefix)
    return str(number + 1)


def repeat_high(medication_requests: list[dict[str, Any]], course: str) -> str | None:
    """repeatNumber.high: 1 for repeat prescribing, repeats+1 for repeat dispensing, none for acute."""
    if course == CONTINUOUS:
        return "1"
    if course != REPEAT_DISPENSING:
        return None
    first = medication_requests[0]
    # a release response turned back into a prescription carries the count in basedOn
    based_on: list[dict[str, Any]] = []
    for item in objs(first.get("basedOn"), "MedicationRequest.basedOn"):
        based_on.extend(objs(item.get("extension"), "MedicationRequest.basedOn.extension"))
    repeat_info = extension_or_none(based_on, _EPS_REPEAT_URL, "MedicationRequest.basedOn.extension")
    if repeat_info is not None:
        path = "MedicationRequest.basedOn.extension.extension"
        allowed = extension_or_none(repeat_info.get("extension"), "numberOfRepeatsAllowed", path)
        if allowed is not None:
            return _repeats_plus_one(allowed.get("valueInteger"), f"{path}.valueInteger")
    dispense = obj(first.get("dispenseRequest"), "MedicationRequest.dispenseRequest")
    allowed_count = dispense.get("numberOfRepeatsAllowed")
    if allowed_count is None or allowed_count == "":
        raise invalid(
            "Number of repeats allowed is required.",
            "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
        )
    return _repeats_plus_one(allowed_count, "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed")


def medication_coding(message: Message, request: dict[str, Any]) -> dict[str, Any]:
    """The SNOMED (dm+d) coding of the medicine, inline or from a referenced Medication."""
    concept = request.get("medicationCodeableConcept")
    if concept:
        path = "MedicationRequest.medicationCodeableConcept.coding"
        return coding_for_system(
            obj(concept, "MedicationRequest.medicationCodeableConcept").get("coding"), _SNOMED_SYSTEM, path
        )
    reference = obj(request.get("medicationReference"), "MedicationRequest.medicationReference")
    medication = message.resolve(reference, "MedicationRequest.medicationReference", "Medication")
    code = obj(medication.get("code"), "Medication.code")
    return coding_for_system(code.get("coding"), _SNOMED_SYSTEM, "Medication.code.coding")


def _escape_inner(value: str) -> str:
    # xml-js's text escaping: it first undoes "&amp;" (to avoid double escaping), then escapes & < >
    value = value.replace("&amp;", "&")
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _controlled_drug_words(request: dict[str, Any]) -> str | None:
    controlled = extension_or_none(
        request.get("extension"), _CONTROLLED_DRUG_URL, "MedicationRequest.extension"
    )
    if controlled is None:
        return None
    path = f'MedicationRequest.extension("{_CONTROLLED_DRUG_URL}").extension'
    words = extension_or_none(controlled.get("extension"), "quantityWords", path)
    if words is None or not words.get("valueString"):
        return None
    return f"CD: {text(words.get('valueString'), f'{path}.valueString')}"


def additional_instructions(
    request: dict[str, Any], medication_list: list[str], patient_info: list[str]
) -> str:
    """The additional-instructions value: an XML-ish string EPS builds with xml-js, then signs as text."""
    note = only_or_none(objs(request.get("note"), "MedicationRequest.note"), "MedicationRequest.note")
    note_text = opt_text(note.get("text"), "MedicationRequest.note.text") if note else None
    parts = "".join(f"<medication>{_escape_inner(item)}</medication>" for item in medication_list)
    parts += "".join(f"<patientInfo>{_escape_inner(item)}</patientInfo>" for item in patient_info)
    free_text = "\n".join(part for part in (_controlled_drug_words(request), note_text) if part)
    return parts + _escape_inner(free_text)


def dosage_text(request: dict[str, Any]) -> str:
    """One dosage's text, or several joined: same sequence ", and ", next sequence ", then "."""
    path = "MedicationRequest.dosageInstruction"
    dosages = objs(request.get("dosageInstruction"), path)
    if not dosages:
        raise invalid("Required field missing.", path)
    if len(dosages) == 1:
        return text(dosages[0].get("text"), f"{path}.text")
    by_sequence: dict[int | float | Decimal, list[str]] = {}
    for dosage in dosages:
        sequence = dosage.get("sequence")
        if not sequence or isinstance(sequence, bool) or not isinstance(sequence, int | float | Decimal):
            raise invalid("Dosage instructions lacking complete sequencing.", f"{path}.sequence")
        by_sequence.setdefault(sequence, []).append(text(dosage.get("text"), f"{path}.text"))
    return ", then ".join(", and ".join(by_sequence[key]) for key in sorted(by_sequence))


def _annotation(parent: etree._Element, tag: str, code: str) -> etree._Element:
    _v3.sub(parent, "seperatableInd", {"value": "false"})  # sic: EPS's (and the V3 schema's) spelling
    annotation = _v3.sub(parent, tag, {"classCode": "OBS", "moodCode": "EVN"})
    _v3.code(annotation, "code", _v3.PRESCRIPTION_ANNOTATION, code)
    return annotation


def _pertinent(parent: etree._Element, tag: str) -> etree._Element:
    return _v3.sub(parent, tag, {"typeCode": "PERT", "contextConductionInd": "true"})


def line_item(
    message: Message,
    request: dict[str, Any],
    high: str | None,
    medication_list: list[str],
    patient_info: list[str],
) -> etree._Element:
    """The ``<pertinentLineItem>`` fragment for one MedicationRequest."""
    element = _v3.root("pertinentLineItem", {"classCode": "SBADM", "moodCode": "RQO"})
    item_id = identifier_value(request.get("identifier"), _ITEM_NUMBER, "MedicationRequest.identifier")
    _v3.sub(element, "id", {"root": _v3.global_identifier(item_id)})
    _v3.code(element, "code", _v3.SNOMED, "225426007", "Administration of therapeutic substance (procedure)")
    _v3.sub(element, "effectiveTime", {"nullFlavor": "NA"})
    if high is not None:
        _v3.sub(_v3.sub(element, "repeatNumber"), "high", {"value": high})

    coding = medication_coding(message, request)
    product = _v3.sub(element, "product", {"typeCode": "PRD", "contextControlCode": "OP"})
    manufactured = _v3.sub(product, "manufacturedProduct", {"classCode": "MANU"})
    material = _v3.sub(
        manufactured, "manufacturedRequestedMaterial", {"classCode": "MMAT", "determinerCode": "KIND"}
    )
    code_path = "MedicationRequest.medicationCodeableConcept.coding"
    _v3.code(
        material,
        "code",
        _v3.SNOMED,
        opt_text(coding.get("code"), f"{code_path}.code"),
        opt_text(coding.get("display"), f"{code_path}.display"),
    )

    dispense = obj(request.get("dispenseRequest"), "MedicationRequest.dispenseRequest")
    quantity = obj(dispense.get("quantity"), "MedicationRequest.dispenseRequest.quantity")
    quantity_path = "MedicationRequest.dispenseRequest.quantity"
    value = text(quantity.get("value"), f"{quantity_path}.value")
    component = _v3.sub(element, "component", {"typeCode": "COMP"})
    _v3.sub(component, "seperatableInd", {"value": "false"})
    supply = _v3.sub(component, "lineItemQuantity", {"classCode": "SPLY", "moodCode": "RQO"})
    _v3.code(supply, "code", _v3.SNOMED, "373784005", "Dispensing medication (procedure)")
    v3_quantity = _v3.sub(supply, "quantity", {"value": value, "unit": "1"})
    _v3.code(
        v3_quantity,
        "translation",
        _v3.SNOMED,
        opt_text(quantity.get("code"), f"{quantity_path}.code"),
        opt_text(quantity.get("unit"), f"{quantity_path}.unit"),
    ).set("value", value)

    instructions = additional_instructions(request, medication_list, patient_info)
    if instructions:
        annotation = _annotation(
            _pertinent(element, "pertinentInformation1"), "pertinentAdditionalInstructions", "AI"
        )
        _v3.sub(annotation, "value", text=instructions)

    for ext in objs(request.get("extension"), "MedicationRequest.extension"):
        if ext.get("url") != _ENDORSEMENT_URL:
            continue
        path = f'MedicationRequest.extension("{_ENDORSEMENT_URL}").valueCodeableConcept'
        concept = obj(ext.get("valueCodeableConcept"), path)
        endorsement = coding_for_system(concept.get("coding"), _ENDORSEMENT_SYSTEM, f"{path}.coding")
        annotation = _annotation(
            _pertinent(element, "pertinentInformation3"), "pertinentPrescriberEndorsement", "PE"
        )
        _v3.code(
            annotation,
            "value",
            _v3.PRESCRIPTION_ENDORSEMENT,
            opt_text(endorsement.get("code"), f"{path}.code"),
        )

    annotation = _annotation(
        _pertinent(element, "pertinentInformation2"), "pertinentDosageInstructions", "DI"
    )
    _v3.sub(annotation, "value", text=dosage_text(request))
    return element
