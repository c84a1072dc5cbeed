"""The prescription's own signed parts: its id and the author's time.

The id fragment is the long-form prescription id (a UUID, from the first MedicationRequest's
``groupIdentifier`` extension), written upper case. The time is when the prescriber signed: the
requester's Provenance signature time when the message carries one (a message being sent after
signing), else now, which is what EPS stamps on a message being prepared for signing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lxml import etree

from eps import _v3
from eps._dates import hl7_date_time, hl7_now
from eps._fhir import Message, extension, invalid, obj, objs, only_or_none, text

PRESCRIPTION_ID_URL = "https://fhir.nhs.uk/StructureDefinition/Extension-DM-PrescriptionId"
SHORT_FORM_SYSTEM = "https://fhir.nhs.uk/Id/prescription-order-number"
_MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+"


def short_form_id_valid(value: str) -> bool:
    """The short-form prescription id's check character (ISO 7064 MOD 37-2, "+" for "*").

    Format ``XXXXXX-XXXXXX-XXXXXC``: 17 hex/alphanumeric characters and the check character.
    """
    compact = value.replace("-", "")
    if len(value) != 20 or len(compact) != 18 or value[6] != "-" or value[13] != "-":
        return False
    total = 0
    for char in compact[:17].upper():
        if char not in _MOD37_ALPHABET[:36]:
            return False
        total = ((total + int(char, 36)) * 2) % 37
    check = compact[17].upper()
    return check in _MOD37_ALPHABET and (total + _MOD37_ALPHABET.index(check)) % 37 == 1


def prescription_ids(request: dict[str, Any]) -> tuple[str, str]:
    """(long-form UUID, short-form id) from a MedicationRequest's groupIdentifier."""
    group = obj(request.get("groupIdentifier"), "MedicationRequest.groupIdentifier")
    ext = extension(
        group.get("extension"), PRESCRIPTION_ID_URL, "MedicationRequest.groupIdentifier.extension"
    )
    identifier = obj(
        ext.get("valueIdentifier"), "MedicationRequest.groupIdentifier.extension.valueIdentifier"
    )
    long_form = text(
        identifier.get("value"), "MedicationRequest.groupIdentifier.extension.valueIdentifier.value"
    )
    short_form = text(group.get("value"), "MedicationRequest.groupIdentifier.value")
    return long_form, short_form


def check_short_form_id(short_form: str) -> None:
    if not short_form_id_valid(short_form):
        raise invalid(
            f"Invalid prescription short-form id '{short_form}': prescriptionID has invalid checksum.",
            "MedicationRequest.groupIdentifier.value",
        )


def author_time(message: Message, requester: dict[str, Any], now: datetime | None = None) -> str:
    """V3 author time: the requester's Provenance signature time, else ``now`` (default: the clock)."""
    signatory = requester.get("reference")
    signatures = []
    for provenance in message.of_type("Provenance"):
        for signature in objs(provenance.get("signature"), "Provenance.signature"):
            who = signature.get("who")
            if isinstance(who, dict) and who.get("reference") == signatory:
                signatures.append(signature)
    signature = only_or_none(signatures, "Provenance.signature", f"who.reference == '{signatory}'")
    if signature is None:
        return hl7_now(now)
    return hl7_date_time(signature.get("when"), "Provenance.signature.when")


def id_fragment(long_form: str) -> etree._Element:
    return _v3.root("id", {"root": _v3.global_identifier(long_form)})


def time_fragment(time: str) -> etree._Element:
    return _v3.root("time", {"value": time})
