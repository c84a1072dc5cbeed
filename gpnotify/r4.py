"""Reading the stored R4 resources a notification is built from: resolving references among them,
and the few facts every notification needs (NHS Number, the registered GP practice's ODS code).

Everything here refuses with ``FhirError`` (422, an ``expression`` at the element) rather than
guessing: a notification to the wrong practice, or about the wrong patient, is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.errors import FhirError

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORG = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"

Resource = dict[str, Any]


def missing(diagnostics: str, expression: str, status: int = 422) -> FhirError:
    return FhirError(status, diagnostics, expression=[expression], code="required")


def key_of(reference: str) -> str:
    """``Type/id`` of a relative or absolute reference (``…/fhir/Patient/1/_history/2`` → ``Patient/1``)."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


@dataclass(frozen=True)
class Related:
    """The R4 resources a notification refers to, as read from the store, keyed by ``Type/id``."""

    by_key: Mapping[str, Resource]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Related:
        return cls({f"{r['resourceType']}/{r['id']}": r for r in resources if r.get("id")})

    def get(self, ref: Mapping[str, Any] | None, want: str | None = None) -> Resource | None:
        """The resource ``ref`` (an R4 Reference) points at, if it was given (and is a ``want``)."""
        if not ref or not isinstance(ref.get("reference"), str):
            return None
        found = self.by_key.get(key_of(ref["reference"]))
        if found is not None and want and found.get("resourceType") != want:
            return None
        return found

    def require(self, ref: Mapping[str, Any] | None, want: str, expression: str) -> Resource:
        found = self.get(ref, want)
        if found is None:
            what = (ref or {}).get("reference") or "no reference"
            raise missing(
                f"{expression} must refer to a {want} that is stored ({what} was not found)", expression
            )
        return found


def identifier_value(resource: Mapping[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def nhs_number(patient: Resource) -> str:
    value = identifier_value(patient, NHS_NUMBER)
    if not value:
        raise missing(
            f"Patient/{patient.get('id')} has no NHS Number: a GP practice files a notification by it",
            "Patient.identifier",
        )
    return value


@dataclass(frozen=True)
class Practice:
    """The patient's registered GP practice: its ODS code, and the stored Organization if there is one."""

    ods: str
    name: str | None
    organization: Resource | None


def gp_practice(patient: Resource, related: Related) -> Practice:
    """The practice named by ``Patient.generalPractitioner``: a stored Organization with an ODS code,
    or a logical reference by ODS identifier. No practice, no notification (issue 14)."""
    for i, ref in enumerate(patient.get("generalPractitioner") or []):
        org = related.get(ref, "Organization")
        if org is not None:
            ods = identifier_value(org, ODS_ORG)
            if ods:
                return Practice(ods, org.get("name") or ref.get("display"), org)
            raise missing(
                f"the GP practice Organization/{org.get('id')} has no ODS code ({ODS_ORG})",
                f"Patient.generalPractitioner[{i}]",
            )
        ident = ref.get("identifier") or {}
        if ident.get("system") == ODS_ORG and ident.get("value"):
            return Practice(str(ident["value"]), ref.get("display"), None)
    raise missing(
        f"Patient/{patient.get('id')} has no registered GP practice: Patient.generalPractitioner must name "
        "an Organization with an ODS code, so the practice's MESH mailbox can be found",
        "Patient.generalPractitioner",
    )


def human_name(resource: Mapping[str, Any]) -> tuple[str, str]:
    """(family, given) of the first name, for reference displays and narrative."""
    names = resource.get("name") or []
    if not names or not isinstance(names, list):
        return "", ""
    name = names[0]
    return str(name.get("family") or ""), " ".join(name.get("given") or [])
