"""What a received dispense needs to mean the same here: its prescription, found by identifier.

A dispensing system names the prescription it dispensed in ``authorizingPrescription``; sent from
another deployment (``dispense-to-prescriber``), or written by a system that knows the request
only by the identifier it was notified of, that is a logical reference: the request's identifier.
Completing the request (``dispensing.completion``) and sharing the dispense with its prescriber
(``careaccess``) both need the literal reference, so the one MedicationRequest the writer may read
with that identifier is named here before they look. None: the reference stays logical, as FHIR
allows for something not held here; more than one: the write is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Resource = dict[str, Any]
Find = Callable[[str, str], "list[Resource]"]  # (system, value) -> the readable requests with it


class AmbiguousPrescription(Exception):
    """More than one MedicationRequest the writer may read carries that identifier."""

    def __init__(self, expression: str, identifier: str, count: int):
        super().__init__(
            f"{count} MedicationRequests you may read carry the identifier {identifier}: "
            "name the one dispensed by its reference"
        )
        self.expression = expression


def link_prescriptions(dispense: Resource, find: Find) -> list[str]:
    """Add the literal reference to each ``authorizingPrescription`` given only by identifier
    (in place); the references added, in order."""
    linked = []
    for i, ref in enumerate(dispense.get("authorizingPrescription") or []):
        if not isinstance(ref, dict) or ref.get("reference") is not None:
            continue
        ident = ref.get("identifier")
        if not isinstance(ident, dict) or not ident.get("system") or not ident.get("value"):
            continue
        if ref.get("type") not in (None, "MedicationRequest"):
            continue
        found = find(str(ident["system"]), str(ident["value"]))
        if len(found) > 1:
            where = f"MedicationDispense.authorizingPrescription[{i}].identifier"
            raise AmbiguousPrescription(where, f"{ident['system']}|{ident['value']}", len(found))
        if found and found[0].get("id"):
            ref["reference"] = f"MedicationRequest/{found[0]['id']}"
            linked.append(ref["reference"])
    return linked
