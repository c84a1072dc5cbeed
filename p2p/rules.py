"""The routing rule table: which change of which resource goes to which partner system.

Hub-and-spoke routing (``plugins/routing.py``) follows one message flow. The medicines reference
architectures (NHS England's implementation guide for digital medicines) name more: a prescribing
system and a dispensing system that are both FHIR servers POST to each other. Each such hand-off
is one row here, switched on per deployment by ``FHIRPLUG_ROUTING_RULES``:

======================  ==================  ==========  ===============================================
rule                    resource            becomes     goes to (the partner directory's system of ...)
======================  ==================  ==========  ===============================================
request-to-dispenser    MedicationRequest   active      ``dispenseRequest.performer`` (role dispenser)
dispense-to-prescriber  MedicationDispense  completed   the ``requester`` of the MedicationRequest its
                                                        ``authorizingPrescription`` names (its
                                                        Organization, or a PractitionerRole's
                                                        ``organization``; role prescriber)
======================  ==================  ==========  ===============================================

A rule fires when a write makes the resource reach that status (created in it, or updated into
it from another); the same status written again fires nothing. The destination is an ODS code;
whether a partner deployment stands behind it (and in a role the rule may send to) is the
plugin's question to the directory. Pure functions: the reads they need are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Resource = dict[str, Any]
OrgOds = Callable[[Any], "str | None"]  # the ODS code an Organization Reference names (or None)
Read = Callable[[Any, str], "Resource | None"]  # a Reference of that type, read here (or None)


@dataclass(frozen=True)
class Rule:
    """One hand-off: a ``resource_type`` that becomes ``status`` goes to the partner named by
    ``destination`` (documentation, in FHIRPath), found by ``find``."""

    name: str
    resource_type: str
    status: str
    destination: str
    partner_roles: tuple[str, ...]  # partner directory roles the rule may send to
    find: Callable[[Resource, OrgOds, Read], str | None]


def performer_ods(request: Resource, org_ods: OrgOds, read: Read) -> str | None:
    """request-to-dispenser: the organisation the request is to be dispensed by."""
    return org_ods((request.get("dispenseRequest") or {}).get("performer"))


def prescriber_ods(dispense: Resource, org_ods: OrgOds, read: Read) -> str | None:
    """dispense-to-prescriber: the organisation of the requester of the request it dispenses
    (the first ``authorizingPrescription`` that names one)."""
    for ref in dispense.get("authorizingPrescription") or []:
        request = read(ref, "MedicationRequest") if isinstance(ref, dict) else None
        if request is not None and (ods := requester_ods(request, org_ods, read)):
            return ods
    return None


def requester_ods(request: Resource, org_ods: OrgOds, read: Read) -> str | None:
    """A MedicationRequest's requester as an ODS code: an Organization (by ODS identifier or
    reference), or the ``organization`` of a PractitionerRole. A Practitioner alone names no
    organisation, so nothing can be routed to it."""
    requester = request.get("requester")
    if not isinstance(requester, dict):
        return None
    if (ods := org_ods(requester)) is not None:
        return ods
    if requester.get("type") == "PractitionerRole" or "PractitionerRole/" in str(requester.get("reference")):
        role = read(requester, "PractitionerRole")
        if role is not None:
            return org_ods(role.get("organization"))
    return None


RULES: tuple[Rule, ...] = (
    Rule(
        "request-to-dispenser",
        "MedicationRequest",
        "active",
        "MedicationRequest.dispenseRequest.performer",
        ("dispenser",),
        performer_ods,
    ),
    Rule(
        "dispense-to-prescriber",
        "MedicationDispense",
        "completed",
        "MedicationDispense.authorizingPrescription.resolve().requester",
        ("prescriber",),
        prescriber_ods,
    ),
)
BY_NAME = {r.name: r for r in RULES}


def select(names: Iterable[str]) -> tuple[Rule, ...]:
    """The rules named (``FHIRPLUG_ROUTING_RULES``), in table order; an unknown name is a
    configuration error, raised at start rather than ignored."""
    wanted = [n.strip() for n in names if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown routing rule(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return tuple(r for r in RULES if r.name in wanted)


def fires(rule: Rule, new: Resource, old: Resource | None) -> bool:
    """Does writing ``new`` over ``old`` (None: a create) make it reach the rule's status?"""
    if not isinstance(new, dict) or new.get("resourceType") != rule.resource_type:
        return False
    if new.get("status") != rule.status:
        return False
    return old is None or old.get("status") != rule.status
