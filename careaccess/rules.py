"""The care-relationship rules: one table of who may read what because of the care role their
organisation is named in. Read only: writing still needs the tenant label.

Each rule is evaluated when the resource that names the relationship is written (by a tenant,
through the proxy), and grants reader labels (``careaccess.labels``) to the resource it names:

==================  ==================  =======================================================
rule                reader label on     granted to
==================  ==================  =======================================================
nominated-pharmacy  MedicationRequest   the organisation of ``dispenseRequest.performer``
                                        (ODS identifier, or reference to its Organization)
task-owner          MedicationRequest   the ``owner`` of a Task whose ``focus`` is that request
request-patient     Patient             every reader of a MedicationRequest whose ``subject``
                                        it is (the pharmacy reads the patient it dispenses to)
prescriber          MedicationDispense  the tenants (owners) of the MedicationRequest its
                                        ``authorizingPrescription`` names
==================  ==================  =======================================================

The store's interceptor (``CareAccess.java``) holds the same table as data and the same
meaning of the labels; ``tests/fixtures/careaccess/cases.json`` is the one set of cases both
are tested against.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from careaccess.labels import tenants_of


@dataclass(frozen=True)
class Rule:
    """One care relationship: writing ``source`` grants ``target`` readers named by ``via``."""

    name: str
    source: str  # the resource type whose content names the relationship
    via: str  # the element (FHIRPath) that names it
    target: str  # the resource type that gets the reader label


RULES: tuple[Rule, ...] = (
    Rule(
        "nominated-pharmacy",
        "MedicationRequest",
        "MedicationRequest.dispenseRequest.performer",
        "MedicationRequest",
    ),
    Rule("task-owner", "Task", "Task.owner (Task.focus: the MedicationRequest)", "MedicationRequest"),
    Rule("request-patient", "MedicationRequest", "MedicationRequest.subject", "Patient"),
    Rule(
        "prescriber",
        "MedicationDispense",
        "MedicationDispense.authorizingPrescription",
        "MedicationDispense",
    ),
)
# the resource types that may ever carry a reader label
READABLE_TYPES = frozenset(r.target for r in RULES)

OrgOds = Callable[[dict[str, Any]], "str | None"]  # the ODS code a Reference to an Organization names
Resolve = Callable[[dict[str, Any], str], "dict[str, Any] | None"]  # a Reference of that type, read

_LOCAL = re.compile(r"^(?:urn:uuid:[0-9a-fA-F-]{36}|[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})$")


@dataclass
class Grants:
    """What writing one resource grants: readers on itself, and on other resources it names
    (by their reference as written: a ``urn:uuid`` of the same transaction or ``Type/id``)."""

    own: set[str] = field(default_factory=set)
    others: dict[str, set[str]] = field(default_factory=dict)

    def add(self, reference: str | None, readers: set[str]) -> None:
        if reference and readers and _LOCAL.match(reference.split("/_history/")[0]):
            self.others.setdefault(reference.split("/_history/")[0], set()).update(readers)


def grants(resource: dict[str, Any], org_ods: OrgOds, resolve: Resolve) -> Grants:
    """The reader labels writing ``resource`` grants, by :data:`RULES`. ``org_ods`` reads the ODS
    code of an Organization reference; ``resolve`` reads a referenced resource the writer may see
    (None when it cannot), for the prescriber rule."""
    out = Grants()
    rtype = resource.get("resourceType")
    if rtype == "MedicationRequest":
        out.own |= request_readers(resource, org_ods)
        # the labels it carries as sent are the caller's, never a source of grants
        out.add(_ref(resource.get("subject")), out.own)
    elif rtype == "Task":
        owner = org_ods(resource["owner"]) if isinstance(resource.get("owner"), dict) else None
        focus = _ref(resource.get("focus"))
        if owner and focus and focus.startswith(("MedicationRequest/", "urn:uuid:")):
            request = resolve(resource["focus"], "MedicationRequest")
            if request is not None:
                out.add(focus, {owner})
                out.add(_ref(request.get("subject")), {owner})
    elif rtype == "MedicationDispense":
        for ref in resource.get("authorizingPrescription") or []:
            if isinstance(ref, dict) and (request := resolve(ref, "MedicationRequest")) is not None:
                out.own |= tenants_of(request)
    return out


def request_readers(request: dict[str, Any], org_ods: OrgOds) -> set[str]:
    """nominated-pharmacy: the organisation a MedicationRequest is to be dispensed by."""
    performer = (request.get("dispenseRequest") or {}).get("performer")
    ods = org_ods(performer) if isinstance(performer, dict) else None
    return {ods} if ods else set()


def _ref(value: object) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None
