"""EPS ``Task/$release``: a pharmacy takes prescriptions off the queue, atomically.

Two kinds of release (the seed's ``Task-release-message``; EPS's fhir-dispensing API):

- **nominated**: the ``owner`` pharmacy's own queue, up to :data:`MAX_NOMINATED` prescriptions
  nominated to it and not released before (business status 0001), oldest ``authoredOn`` first;
- **patient**: one prescription by its short-form id (``group-identifier``), whichever pharmacy
  the patient took it to.

"This operation performs both a query on the message queue and updates the status of returned
prescriptions": each prescription's tracking Task (``eps.records``) is read with its version and
moved to *with dispenser* by an update that names that version (``If-Match``). The store applies
the update only if nobody changed the Task in between, so of any number of concurrent releases —
in any number of proxy processes — exactly one gets each prescription. The store's version check
is the arbiter; nothing here holds a lock.

The rules are here; ``plugins/eps_release.py`` wires them into the proxy. Store access is through
the small :class:`Store` protocol (``proxy.store_reader.StoreReader`` fits it), so the rules test
with a fake.
"""

from __future__ import annotations

import copy
import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from eps.records import (
    BUSINESS_STATUS_SYSTEM,
    PRESCRIPTION_ID_SYSTEM,
    TRACKING_TAG,
    BusinessStatus,
    business_status,
    owner_ods,
    tenant_labels,
    with_status,
    with_tenant,
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


# ---------------------------------------------------------------- the release


def release_nominated(
    store: Store, request: ReleaseRequest, *, now: str, client_id: str | None = None
) -> Released:
    """Up to 25 of the pharmacy's nominated prescriptions, oldest first, each taken by a
    compare-and-set on its tracking Task. ``store`` acts as the pharmacy (the store's tenancy
    line applies: it can only ever see and move what carries the pharmacy's label).

    One batch carries every compare-and-set of a round (each entry succeeds or fails on its own);
    one the store refuses was taken by a concurrent release and is skipped. A round that lost
    some looks again, so racing tills between them hand out the whole queue.
    """
    released = Released()
    for _ in range(MAX_ROUNDS):
        wanted = MAX_NOMINATED - len(released.tasks)
        if wanted <= 0:
            break
        found = _matches(store.search("Task", nominated_query(request.pharmacy), count=wanted), "Task")
        # The search's index is only a hint: a Task another release moved between the store's
        # index look-up and its load of the bodies comes back moved. The body and its version
        # are what the compare-and-set is about, so the body must still be in the queue.
        tasks = [t for t in found[:wanted] if _queued(t, request.pharmacy)]
        stale = len(found[:wanted]) - len(tasks)
        if not found:
            break
        moves = [released_task(t, request, now) for t in tasks]
        if not tasks:
            continue  # all moved under us: look again
        status, answer = store.transaction(_batch(tasks, moves))
        if status != 200 or not isinstance(answer, dict):
            raise FhirError(
                503, f"The FHIR store refused the release ({status})", headers={"Retry-After": "5"}
            )
        results = answer.get("entry") or []
        lost, won, failed = stale, [], []
        for task, moved, result in zip(tasks, moves, results + [{}] * len(tasks), strict=False):
            if not str((result.get("response") or {}).get("status", "")).startswith("2"):
                failed.append(str(task["id"]))  # most often: a concurrent release moved it first
                continue
            moved["meta"] = {**moved.get("meta", {}), "versionId": _etag_version(result)}
            won.append(moved)
        if failed:
            # Under load HAPI can report an entry as failed that it applied (seen on H2: a
            # retried write of the version it had just stored, refused by the version index).
            # The Task's current body says whose write stands.
            current = _matches(store.search("Task", [("_id", ",".join(failed))], count=len(failed)), "Task")
            mine = [t for t in current if _moved_by(t, request)]
            won += mine
            lost += len(failed) - len(mine)
        released.tasks += won
        released.messages += _messages(store, won)
        if lost == 0 and len(found) < wanted:
            break  # the queue is empty
    if not released.tasks:
        released.informational = no_more_prescriptions()
    return released


def release_patient(
    store: Store, request: ReleaseRequest, *, now: str, client_id: str | None = None
) -> Released:
    """The one prescription ``request.short_id`` names, for the releasing pharmacy.

    ``store`` acts as the proxy itself: the prescription is not labelled for this pharmacy until
    it is released to it. One transaction moves the Task (compare-and-set), adds the pharmacy's
    label to the message and its MedicationRequests (so the pharmacy may read what it holds)
    and records the audit event: all of it happens, or none.
    """
    assert request.short_id is not None
    found = store.search(
        "Task",
        [
            ("group-identifier", f"{PRESCRIPTION_ID_SYSTEM}|{request.short_id}"),
            ("_tag", f"{TRACKING_TAG['system']}|{TRACKING_TAG['code']}"),
        ],
        count=2,
    )
    tasks = _matches(found, "Task")
    if not tasks:
        raise ReleaseRefused(not_found())
    task = tasks[0]
    state = business_status(task)
    if state is not BusinessStatus.TO_BE_DISPENSED and not (
        state is BusinessStatus.WITH_DISPENSER and owner_ods(task) == request.pharmacy
    ):
        raise _refusal_for(store, task)
    message = next(iter(_messages(store, [task])), None)
    moved = released_task(task, request, now)
    entries = [_cas_entry(task, moved)]
    labelled: list[dict[str, Any]] = []
    if message is not None and request.pharmacy not in _tenants(message):
        labelled.append(with_tenant(message, request.pharmacy))
        labelled.extend(
            with_tenant(mr, request.pharmacy)
            for mr in _medication_requests(store, task)
            if request.pharmacy not in _tenants(mr)
        )
    entries += [
        {
            "resource": r,
            "request": {
                "method": "PUT",
                "url": f"{r['resourceType']}/{r['id']}",
                "ifMatch": f'W/"{(r.get("meta") or {}).get("versionId")}"',
            },
        }
        for r in labelled
    ]
    entries.append(_audit_entry(moved, request, now, client_id))
    status, answer = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if status in (409, 412):
        # someone moved it (or relabelled a part) first: answer from what it is now
        again = _matches(store.search("Task", [("_id", str(task.get("id")))], count=1), "Task")
        current = again[0] if again else task
        if (
            business_status(current) is BusinessStatus.WITH_DISPENSER
            and owner_ods(current) == request.pharmacy
        ):
            raise ReleaseRefused(_retry_later())
        raise _refusal_for(store, current)
    if status >= 300 or not isinstance(answer, dict):
        raise FhirError(503, f"The FHIR store refused the release ({status})", headers={"Retry-After": "5"})
    first = (answer.get("entry") or [{}])[0]
    moved["meta"] = {**moved.get("meta", {}), "versionId": _etag_version(first)}
    if message is not None and labelled:
        message = labelled[0]
    return Released(messages=[message] if message is not None else [], tasks=[moved])


def nominated_query(pharmacy: str) -> list[tuple[str, str]]:
    """The pharmacy's queue: nominated to it, not released yet, oldest first."""
    return [
        (OWNER_PARAM, f"{ODS_SYSTEM}|{pharmacy}"),
        ("business-status", f"{BUSINESS_STATUS_SYSTEM}|{BusinessStatus.TO_BE_DISPENSED.value}"),
        ("_tag", f"{TRACKING_TAG['system']}|{TRACKING_TAG['code']}"),
        ("_sort", "authored-on,_id"),
    ]


def released_task(task: dict[str, Any], request: ReleaseRequest, now: str) -> dict[str, Any]:
    """The tracking Task as released: with dispenser, owned by the releasing pharmacy (label
    added), when (``lastModified``) and by whom (the agent, contained and named by extension)."""
    moved = with_status(task, BusinessStatus.WITH_DISPENSER, owner=request.pharmacy)
    moved["lastModified"] = now
    agent = {**request.agent, "id": AGENT_ID}
    moved["contained"] = [c for c in moved.get("contained") or [] if c.get("id") != AGENT_ID] + [agent]
    ours = (AGENT_EXTENSION, RELEASE_ID_EXTENSION)
    others = [e for e in moved.get("extension") or [] if e.get("url") not in ours]
    moved["extension"] = others + [
        {"url": AGENT_EXTENSION, "valueReference": {"reference": f"#{AGENT_ID}"}},
        {"url": RELEASE_ID_EXTENSION, "valueString": request.release_id},
    ]
    return moved


def _moved_by(task: dict[str, Any], request: ReleaseRequest) -> bool:
    """Whether this release's own write is the Task's current version."""
    marks = [
        e.get("valueString") for e in task.get("extension") or [] if e.get("url") == RELEASE_ID_EXTENSION
    ]
    return (
        marks == [request.release_id]
        and business_status(task) is BusinessStatus.WITH_DISPENSER
        and owner_ods(task) == request.pharmacy
    )


def _queued(task: dict[str, Any], pharmacy: str) -> bool:
    return business_status(task) is BusinessStatus.TO_BE_DISPENSED and owner_ods(task) == pharmacy


def _batch(tasks: list[dict[str, Any]], moves: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [_cas_entry(t, m) for t, m in zip(tasks, moves, strict=True)],
    }


def _cas_entry(task: dict[str, Any], moved: dict[str, Any]) -> dict[str, Any]:
    version = (task.get("meta") or {}).get("versionId")
    return {
        "resource": moved,
        "request": {"method": "PUT", "url": f"Task/{task['id']}", "ifMatch": f'W/"{version}"'},
    }


def _matches(found: list[dict], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in found if isinstance(r, dict) and r.get("resourceType") == resource_type]


def _focus(task: dict[str, Any]) -> str | None:
    ref = (task.get("focus") or {}).get("reference")
    return ref.split("/_history/")[0] if isinstance(ref, str) else None


def _messages(store: Store, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The message Bundles the Tasks focus on, in the Tasks' order (one search)."""
    refs = [ref for t in tasks if (ref := _focus(t)) and ref.startswith("Bundle/")]
    if not refs:
        return []
    ids = [ref.split("/")[1] for ref in refs]
    found = {
        b.get("id"): b
        for b in _matches(store.search("Bundle", [("_id", ",".join(ids))], count=len(ids)), "Bundle")
    }
    return [found[i] for i in ids if i in found]


def _tenants(resource: dict[str, Any]) -> set[str]:
    return {
        s.get("code")
        for s in (resource.get("meta") or {}).get("security") or []
        if s.get("system") == TENANT_SYSTEM
    }


def _etag_version(result: dict[str, Any]) -> str | None:
    response = result.get("response") or {}
    etag = response.get("etag")
    if isinstance(etag, str):
        return etag.removeprefix("W/").strip('"')
    location = response.get("location")
    if isinstance(location, str) and "/_history/" in location:
        return location.rsplit("/", 1)[1]
    return None


def _medication_requests(store: Store, task: dict[str, Any]) -> list[dict[str, Any]]:
    ids = [
        ref.split("/")[1]
        for i in task.get("input") or []
        if isinstance(ref := (i.get("valueReference") or {}).get("reference"), str)
        and ref.startswith("MedicationRequest/")
    ]
    if not ids:
        return []
    return _matches(
        store.search("MedicationRequest", [("_id", ",".join(ids))], count=len(ids)), "MedicationRequest"
    )


def _refusal_for(store: Store, task: dict[str, Any]) -> ReleaseRefused:
    """Why the prescription cannot be released now, as EPS says it."""
    state = business_status(task)
    if state in (BusinessStatus.WITH_DISPENSER, BusinessStatus.WITH_DISPENSER_ACTIVE):
        other = owner_ods(task) or "unknown"
        found = store.search("Organization", [("identifier", f"{ODS_SYSTEM}|{other}")], count=1)
        return ReleaseRefused(with_another_dispenser(other, _matches(found, "Organization")[:1]))
    if state is BusinessStatus.DISPENSED:
        return ReleaseRefused(
            _eps_outcome(
                "business-rule",
                "error",
                EPS_ISSUE_CODES,
                "PRESCRIPTION_DISPENSED",
                "Prescription has been dispensed",
            )
        )
    return ReleaseRefused(not_found())  # cancelled, expired, not dispensed: nothing to release


# ---------------------------------------------------------------- the answers


def searchset(released: Released, self_url: str | None = None) -> dict[str, Any]:
    """The seed's answer: a searchset of the released prescription-order messages (no entries
    when there were none)."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": len(released.messages),
        "entry": [_entry(m) for m in released.messages],
    }
    if self_url:
        bundle["link"] = [{"relation": "self", "url": self_url}]
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


def eps_parameters(released: Released, self_url: str | None = None) -> dict[str, Any]:
    """EPS's answer: ``Parameters`` {passedPrescriptions, failedPrescriptions}. Nothing fails
    here after the store accepted it (EPS's failures are signatures it checks on release; ours
    were checked when the prescription was received), so failedPrescriptions is empty."""
    if released.informational is not None:
        return released.informational
    failed = searchset(Released(), self_url)
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "parameter": [
            {"name": "passedPrescriptions", "resource": searchset(released, self_url)},
            {"name": "failedPrescriptions", "resource": failed},
        ],
    }


def _entry(message: dict[str, Any]) -> dict[str, Any]:
    ident = (message.get("identifier") or {}).get("value")
    return {
        "fullUrl": f"urn:uuid:{ident or message.get('id')}",
        "resource": message,
        "search": {"mode": "match"},
    }


def _eps_outcome(code: str, severity: str, system: str, eps_code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "code": code,
                "severity": severity,
                "details": {"coding": [{"system": system, "code": eps_code, "display": display}]},
            }
        ],
    }


def not_found() -> dict[str, Any]:
    return _eps_outcome("not-found", "error", SPINE_CODES, "RESOURCE_NOT_FOUND", "Resource not found")


def no_more_prescriptions() -> dict[str, Any]:
    return _eps_outcome(
        "informational",
        "information",
        EPS_ISSUE_CODES,
        "NO_MORE_PRESCRIPTIONS",
        "No more prescriptions available",
    )


def _retry_later() -> dict[str, Any]:
    outcome = _eps_outcome(
        "conflict", "error", SPINE_CODES, "RESOURCE_VERSION_MISMATCH", "Resource version mismatch"
    )
    outcome["issue"][0]["diagnostics"] = (
        "The prescription changed while it was being released to you; release it again"
    )
    return outcome


def with_another_dispenser(ods: str, stored: list[dict[str, Any]]) -> dict[str, Any]:
    """EPS's PRESCRIPTION_WITH_ANOTHER_DISPENSER, the dispenser's Organization contained (what the
    store knows of it, else its ODS code) and named by Spine's supportingInfo extension."""
    org_id = str(uuid.uuid4())
    org: dict[str, Any] = {"resourceType": "Organization", "id": org_id}
    if stored:
        for key in ("identifier", "name", "telecom", "address"):
            if key in stored[0]:
                org[key] = copy.deepcopy(stored[0][key])
    if not any(i.get("system") == ODS_SYSTEM for i in org.get("identifier") or []):
        org["identifier"] = [{"system": ODS_SYSTEM, "value": ods}]
    outcome = _eps_outcome(
        "business-rule",
        "error",
        EPS_ISSUE_CODES,
        "PRESCRIPTION_WITH_ANOTHER_DISPENSER",
        "Prescription is with another dispenser",
    )
    outcome["contained"] = [org]
    outcome["extension"] = [{"url": SUPPORTING_INFO, "valueReference": {"reference": f"#{org_id}"}}]
    return outcome


# ---------------------------------------------------------------- the audit record


def audit_event(
    tasks: list[dict[str, Any]],
    request: ReleaseRequest,
    now: str,
    client_id: str | None,
    labels: list[dict[str, str]],
) -> dict[str, Any]:
    """The AuditEvent of one release: the client and the pharmacist (the agent), the pharmacy,
    and the Task versions that record it, labelled with ``labels``."""
    agent = request.agent
    who = {"identifier": {"system": ODS_SYSTEM, "value": request.pharmacy}}
    practitioner = agent.get("practitioner") if isinstance(agent.get("practitioner"), dict) else None
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "meta": {"security": labels},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [dict(AUDIT_SUBTYPE)],
        "action": "U",
        "recorded": now,
        "outcome": "0",
        "agent": [
            {"who": who, "altId": client_id or "", "requestor": True},
        ],
        "source": {"observer": who},
        "entity": [
            {"what": {"reference": _versioned(t)}, "description": f"{request.kind.value} release"}
            for t in tasks
        ],
    }
    if not client_id:
        del event["agent"][0]["altId"]
    if practitioner:
        event["agent"].append(
            {
                "who": {k: v for k, v in practitioner.items() if k in ("identifier", "display")},
                "role": [
                    {"coding": c.get("coding", [])} for c in agent.get("code") or [] if isinstance(c, dict)
                ],
                "requestor": False,
            }
        )
    return event


def _versioned(task: dict[str, Any]) -> str:
    version = (task.get("meta") or {}).get("versionId")
    return f"Task/{task['id']}" + (f"/_history/{version}" if version else "")


def _audit_entry(
    task: dict[str, Any], request: ReleaseRequest, now: str, client_id: str | None
) -> dict[str, Any]:
    # in the same transaction as the Task: the versioned entity is not known yet, the Task is;
    # labelled as the Task is, so whoever sees the prescription sees who took it
    unversioned = {**task, "meta": {k: v for k, v in (task.get("meta") or {}).items() if k != "versionId"}}
    event = audit_event([unversioned], request, now, client_id, tenant_labels(*_tenants(task)))
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": event,
        "request": {"method": "POST", "url": "AuditEvent"},
    }


def write_audit(
    store: Store, released: Released, request: ReleaseRequest, now: str, client_id: str | None
) -> None:
    """A nominated release's audit event, once the store has the releases: one event naming every
    Task version it moved (one create, not one per prescription: it is on the request's path),
    labelled for the releasing pharmacy only, because the prescriptions of one queue come from
    many prescribers, who must not learn of each other's. A prescriber sees the release on its
    own Task (owner, agent, lastModified, history). The released Task versions are the primary
    record; should this write fail, the release stands (an error answer cannot undo it) and
    :class:`AuditNotWritten` says so."""
    if not released.tasks:
        return
    event = audit_event(released.tasks, request, now, client_id, tenant_labels(request.pharmacy))
    entry = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": event,
        "request": {"method": "POST", "url": "AuditEvent"},
    }
    status, _ = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    if status >= 300:
        raise AuditNotWritten(status)


class AuditNotWritten(Exception):
    """The release happened; its audit events could not be stored (the caller logs this)."""
