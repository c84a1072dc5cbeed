"""The searches integrators write by a business identifier, in the forms the store answers.

Integrators ask for Tasks by their owner's ODS code and for dispenses by the patient's NHS
Number as FHIR reads best: ``Task?owner:identifier=…`` or ``Task?owner.identifier=…``,
``MedicationDispense?subject:identifier=…`` or ``MedicationDispense?patient.identifier=…``. HAPI
refuses the ``:identifier`` modifier (HAPI-2498), and a chain is refused to tenants by both
tenancy lines (it walks every tenant's data). So each is rewritten, before anything judges the
request, into a form without either:

- a Task names its owner, requester and patient **by identifier** (hub-and-spoke and EPS alike):
  the token SearchParameters on those identifiers (``owner-identifier``, ``requester-identifier``,
  ``patient-identifier``; profiles/fhirplug/);
- a MedicationDispense or MedicationRequest names its patient **by reference** to the stored
  Patient: the Patients with that identifier are looked up first, as the caller (the store's
  tenancy line applies, so only the caller's own are found), and the search asks for those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# (resource type, reference parameter) -> the token parameter on that reference's identifier
TOKEN_PARAMS: dict[tuple[str, str], str] = {
    ("Task", "owner"): "owner-identifier",
    ("Task", "requester"): "requester-identifier",
    ("Task", "patient"): "patient-identifier",
    ("Task", "subject"): "patient-identifier",
}
# resource type -> its parameters that reference the Patient
PATIENT_PARAMS: dict[str, frozenset[str]] = {
    "MedicationDispense": frozenset({"patient", "subject"}),
    "MedicationRequest": frozenset({"patient", "subject"}),
}
MAX_PATIENTS = 100  # more Patients with one identifier than this: the caller's data needs tidying
NO_MATCH = "fhirplug-no-patient-with-that-identifier"  # an _id nothing has: the answer is empty


@dataclass(frozen=True)
class TooManyPatients(Exception):
    parameter: str
    identifier: str


def _by_identifier(name: str) -> str | None:
    """The reference parameter of ``ref:identifier`` or ``ref.identifier``; None otherwise."""
    for sep in (":", "."):
        base, found, rest = name.partition(sep)
        if found and rest == "identifier" and base:
            return base
    return None


def needs_rewrite(resource_type: str | None, query: Sequence[tuple[str, str]]) -> bool:
    return any(_target(resource_type, name) is not None for name, _ in query)


def _target(resource_type: str | None, name: str) -> str | None:
    base = _by_identifier(name)
    if base is None or resource_type is None:
        return None
    if (resource_type, base) in TOKEN_PARAMS:
        return "token"
    if base in PATIENT_PARAMS.get(resource_type, frozenset()):
        return "patient"
    return None


def rewrite(
    resource_type: str, query: Sequence[tuple[str, str]], patients_with: Callable[[str], list[str]]
) -> list[tuple[str, str]]:
    """The query with each identifier form replaced. ``patients_with(identifier)`` gives the ids
    of the Patients (as the caller sees them) carrying ``system|value`` (or a bare value)."""
    out: list[tuple[str, str]] = []
    for name, value in query:
        kind = _target(resource_type, name)
        base = _by_identifier(name)
        if kind == "token" and base is not None:
            out.append((TOKEN_PARAMS[(resource_type, base)], value))
        elif kind == "patient" and base is not None:
            ids: list[str] = []
            for one in value.split(","):  # a comma is OR in FHIR search: any of the identifiers
                ids += patients_with(one)
            ids = list(dict.fromkeys(ids))
            if len(ids) > MAX_PATIENTS:
                raise TooManyPatients(name, value)
            out.append((base, ",".join(f"Patient/{i}" for i in ids)) if ids else ("_id", NO_MATCH))
        else:
            out.append((name, value))
    return out
