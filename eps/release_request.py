"""EPS ``Task/$release``: the request, its kinds and shapes, and what a release hands out.

The names ``eps.release`` (the rules) and ``eps.release_answers`` (EPS's answers and the audit
record) share. ``parse`` reads the request's Parameters, in either of the two forms EPS and the
seed use.
"""

from __future__ import annotations

import copy
import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from eps.records import (
    PRESCRIPTION_ID_SYSTEM,
)
from eps.v3_prescription import short_form_id_valid
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from proxy.errors import FhirError

MAX_NOMINATED = 25  # EPS hands a nominated pharmacy at most 25 prescriptions per release
# a nominated release that lost prescriptions to a concurrent one looks again, this often at most
MAX_ROUNDS = 8
# the tracker's search parameters (profiles/fhirplug/): HAPI has no ``:identifier`` modifier
OWNER_PARAM = "owner-identifier"
REQUESTER_PARAM = "requester-identifier"
PATIENT_PARAM = "patient-identifier"
# who released a prescription, recorded on its tracking Task (the PractitionerRole is contained)
AGENT_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/eps-release-agent"
AGENT_ID = "release-agent"
RELEASE_ID_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/eps-release-id"
SPINE_CODES = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode"
EPS_ISSUE_CODES = "https://fhir.nhs.uk/CodeSystem/EPS-IssueCode"
SUPPORTING_INFO = "https://fhir.nhs.uk/StructureDefinition/Extension-Spine-supportingInfo"
AUDIT_SUBTYPE = {"system": "https://fhirplug.org/fhir/CodeSystem/eps-lifecycle", "code": "released"}
KNOWN_PARAMETERS = frozenset({"owner", "group-identifier", "status", "agent", "response-shape"})
_ODS = re.compile(r"^[A-Z0-9]{1,9}$")


class Kind(enum.Enum):
    NOMINATED = "nominated"
    PATIENT = "patient"


class Shape(enum.Enum):
    """What the answer looks like: the seed's searchset Bundle, or EPS's Parameters."""

    SEARCHSET = "searchset"
    EPS_PARAMETERS = "eps-parameters"


@dataclass(frozen=True)
class ReleaseRequest:
    kind: Kind
    pharmacy: str  # the releasing pharmacy's ODS code: always the caller's own
    agent: dict[str, Any]  # the PractitionerRole behind the request, as sent (references dropped)
    short_id: str | None = None  # patient release only
    shape: Shape = Shape.SEARCHSET
    # marks the Tasks this release moved: how it recognises its own write when the store
    # reports an entry as failed that it did in fact apply
    release_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class Store(Protocol):
    """What a release needs of the store (``proxy.store_reader.StoreReader`` has it)."""

    def search(
        self, resource_type: str, query: str | list[tuple[str, str]], count: int = 200
    ) -> list[dict]: ...

    def transaction(self, bundle: dict) -> tuple[int, dict | None]: ...


@dataclass
class Released:
    """What a release handed out: the message Bundles, and the Task versions that record it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    informational: dict[str, Any] | None = None  # NO_MORE_PRESCRIPTIONS
    audited: bool = False  # its audit event was stored with it (one transaction)


class ReleaseRefused(Exception):
    """EPS's business refusals: answered with EPS's OperationOutcome and status (400)."""

    def __init__(self, outcome: dict[str, Any], status: int = 400):
        super().__init__(outcome["issue"][0]["details"]["coding"][0]["code"])
        self.outcome, self.status = outcome, status


# ---------------------------------------------------------------- the request


def parse(body: object, caller_ods: str, shape: str | None = None) -> ReleaseRequest:
    """The release a ``Parameters`` body asks for, on behalf of ``caller_ods``.

    Two spellings are taken. The seed's: exactly one of ``owner`` (``valueIdentifier``, ODS:
    nominated release) and ``group-identifier`` (patient release). EPS's current one: ``owner`` is
    the releasing pharmacy as an Organization ``resource``, always sent, and ``group-identifier``
    present makes it a patient release (the shared EPS examples). Either way an ``owner`` must be
    the caller's own pharmacy (403): a pharmacy never pulls another's queue.
    ``shape`` (from the URL) or a ``response-shape`` parameter picks the answer's form.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise _bad("Task/$release takes a Parameters resource", "Parameters")
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        raise _bad(
            "Parameters.parameter is required: owner or group-identifier, status and agent",
            "Parameters.parameter",
        )
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, p in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise _bad("Each parameter needs a name", f"{where}.name")
        name = p["name"]
        if name not in KNOWN_PARAMETERS:
            raise _bad(
                f"Unknown parameter {name!r}: Task/$release takes owner, group-identifier, status and agent",
                f"{where}.name",
            )
        if name in seen:
            raise _bad(f"Parameter {name!r} is given more than once", f"{where}.name")
        seen[name] = (i, p)

    _check_status(seen.get("status"))
    short_id = _group_identifier(seen.get("group-identifier"))
    owner, owner_form = _owner(seen.get("owner"))
    if owner_form == "identifier" and short_id is not None:
        raise _bad(
            "Give exactly one of owner (nominated release) and group-identifier (patient release)",
            f"Parameters.parameter[{seen['owner'][0]}]",
        )
    if owner is None and short_id is None:
        raise _bad(
            "Give owner (the pharmacy's ODS code: nominated release) or group-identifier "
            "(the prescription's short-form id: patient release)",
            "Parameters.parameter",
        )
    if owner is not None and owner != caller_ods:
        raise FhirError(
            403,
            f"owner {owner} is not your pharmacy ({caller_ods}): "
            "a pharmacy releases only its own prescriptions",
            [f"Parameters.parameter[{seen['owner'][0]}]"],
            code="forbidden",
        )
    agent = _agent(seen.get("agent"))
    answer = _shape(shape, seen.get("response-shape"))
    if short_id is not None:
        return ReleaseRequest(Kind.PATIENT, caller_ods, agent, short_id, answer)
    return ReleaseRequest(Kind.NOMINATED, caller_ods, agent, None, answer)


def _bad(message: str, expression: str) -> FhirError:
    return FhirError(400, message, [expression], code="invalid")


def _check_status(found: tuple[int, dict[str, Any]] | None) -> None:
    if found is None:
        raise _bad("Parameter status is required (valueCode accepted)", "Parameters.parameter")
    i, p = found
    if p.get("valueCode") != "accepted":
        raise _bad("status must be 'accepted'", f"Parameters.parameter[{i}].valueCode")


def _group_identifier(found: tuple[int, dict[str, Any]] | None) -> str | None:
    if found is None:
        return None
    i, p = found
    ident = p.get("valueIdentifier")
    where = f"Parameters.parameter[{i}].valueIdentifier"
    if not isinstance(ident, dict):
        raise _bad("group-identifier needs a valueIdentifier (the prescription's short-form id)", where)
    if ident.get("system") not in (None, PRESCRIPTION_ID_SYSTEM):
        raise _bad(f"group-identifier's system must be {PRESCRIPTION_ID_SYSTEM}", f"{where}.system")
    value = ident.get("value")
    if not isinstance(value, str) or not short_form_id_valid(value):
        raise _bad(
            "group-identifier is not a valid short-form prescription id "
            "(XXXXXX-XXXXXX-XXXXXC, MOD 37-2 check character)",
            f"{where}.value",
        )
    return value.upper()


def _owner(found: tuple[int, dict[str, Any]] | None) -> tuple[str | None, str | None]:
    """(ODS code, "identifier" | "resource") of the owner parameter, or (None, None)."""
    if found is None:
        return None, None
    i, p = found
    where = f"Parameters.parameter[{i}]"
    if "valueIdentifier" in p:
        ident, form, path = p["valueIdentifier"], "identifier", f"{where}.valueIdentifier"
        idents = [ident]
    elif isinstance(p.get("resource"), dict) and p["resource"].get("resourceType") == "Organization":
        form, path = "resource", f"{where}.resource.identifier"
        idents = p["resource"].get("identifier")
        idents = idents if isinstance(idents, list) else []
    else:
        raise _bad("owner is the pharmacy: a valueIdentifier (ODS code) or an Organization resource", where)
    for ident in idents:
        if isinstance(ident, dict) and ident.get("system") == ODS_SYSTEM:
            value = ident.get("value")
            if isinstance(value, str) and _ODS.match(value):
                return value, form
            raise _bad("owner's ODS code is malformed", f"{path}.value" if form == "identifier" else path)
    raise _bad(f"owner needs an identifier with system {ODS_SYSTEM}", path)


def _agent(found: tuple[int, dict[str, Any]] | None) -> dict[str, Any]:
    if found is None:
        raise _bad(
            "Parameter agent (the PractitionerRole behind the request) is required", "Parameters.parameter"
        )
    i, p = found
    agent = p.get("resource")
    where = f"Parameters.parameter[{i}].resource"
    if not isinstance(agent, dict) or agent.get("resourceType") != "PractitionerRole":
        raise _bad("agent must be a PractitionerRole resource", where)
    practitioner = agent.get("practitioner")
    if isinstance(practitioner, dict) and "reference" in practitioner:
        # EPS's rule: the practitioner is named by identifier, not pointed at
        raise _bad("agent's practitioner must be an identifier, not a reference", f"{where}.practitioner")
    return _without_references(copy.deepcopy(agent))


def _without_references(value: Any) -> Any:
    """Kept on the Task, the agent must not point into the store (references are dropped; the
    identifiers and displays beside them say who)."""
    if isinstance(value, dict):
        value.pop("reference", None)
        for item in value.values():
            _without_references(item)
    elif isinstance(value, list):
        for item in value:
            _without_references(item)
    return value


def _shape(from_url: str | None, found: tuple[int, dict[str, Any]] | None) -> Shape:
    asked, where = from_url, "response-shape"
    if found is not None:
        asked, where = found[1].get("valueCode"), f"Parameters.parameter[{found[0]}].valueCode"
    if asked is None:
        return Shape.SEARCHSET
    try:
        return Shape(asked)
    except ValueError:
        raise _bad("response-shape is searchset (the default) or eps-parameters", where) from None


def tenants_of(resource: dict[str, Any]) -> set[str]:
    """The tenant labels a stored resource carries."""
    return {
        s.get("code")
        for s in (resource.get("meta") or {}).get("security") or []
        if s.get("system") == TENANT_SYSTEM
    }
