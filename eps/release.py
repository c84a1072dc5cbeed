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

from typing import Any

from eps.records import (
    PRESCRIPTION_ID_SYSTEM,
    RELEASE_QUEUE_SYSTEM,
    TRACKING_TAG,
    BusinessStatus,
    business_status,
    owner_ods,
    tenant_labels,
    with_status,
    with_tenant,
)
from eps.release_answers import (
    AuditNotWritten,
    audit_entry,
    audit_event,
    eps_outcome,
    eps_parameters,
    no_more_prescriptions,
    not_found,
    retry_later,
    searchset,
    with_another_dispenser,
    write_audit,
)
from eps.release_request import (
    AGENT_EXTENSION,
    AGENT_ID,
    EPS_ISSUE_CODES,
    MAX_NOMINATED,
    MAX_ROUNDS,
    OWNER_PARAM,
    RELEASE_ID_EXTENSION,
    Kind,
    Released,
    ReleaseRefused,
    ReleaseRequest,
    Shape,
    Store,
    parse,
    tenants_of,
)

# the face the plugin, the other EPS steps and the tests use: the rules here, the request and the
# answers from the two modules beside this one
__all__ = [
    "AGENT_EXTENSION",
    "AGENT_ID",
    "MAX_NOMINATED",
    "OWNER_PARAM",
    "RELEASE_ID_EXTENSION",
    "AuditNotWritten",
    "Kind",
    "Released",
    "ReleaseRefused",
    "ReleaseRequest",
    "Shape",
    "audit_entry",
    "audit_event",
    "cas_entry",
    "eps_parameters",
    "not_found",
    "parse",
    "release_nominated",
    "release_patient",
    "released_task",
    "searchset",
    "write_audit",
]
from hubspoke.identifiers import ODS_SYSTEM
from proxy.errors import FhirError

# ---------------------------------------------------------------- the release


def release_nominated(
    store: Store, request: ReleaseRequest, *, now: str, client_id: str | None = None
) -> Released:
    """Up to 25 of the pharmacy's nominated prescriptions, oldest first, each taken by a
    compare-and-set on its tracking Task. ``store`` acts as the pharmacy (the store's tenancy
    line applies: it can only ever see and move what carries the pharmacy's label).

    The first round is one transaction: every compare-and-set, the audit event and the read of
    the messages handed out, all of it or none, in one store request. Should a concurrent release
    have taken any of them (the store refuses the whole transaction), the rounds go on as a batch
    of compare-and-sets, each entry succeeding or failing on its own; one the store refuses was
    taken by the other release and is skipped, and a round that lost some looks again, so racing
    tills between them hand out the whole queue. Those rounds' audit event is written after them.
    """
    released = Released()
    for round_ in range(MAX_ROUNDS):
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
        first = round_ == 0 and stale == 0
        if first and (done := _all_at_once(store, tasks, moves, request, now, client_id)):
            released.tasks, released.messages, released.audited = done[0], done[1], True
            if len(found) < wanted:
                break  # the queue is empty
            continue
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


def _all_at_once(
    store: Store,
    tasks: list[dict[str, Any]],
    moves: list[dict[str, Any]],
    request: ReleaseRequest,
    now: str,
    client_id: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The common case in one store request: a transaction of every compare-and-set, the audit
    event naming the versions they make, and a read of the messages (the store runs a
    transaction's reads after its writes). None: the store refused it (most often a concurrent
    release took one of them); nothing of it happened."""
    versions = [_next_version(t) for t in tasks]
    if None in versions:
        return None
    for moved, version in zip(moves, versions, strict=True):
        moved["meta"] = {**moved.get("meta", {}), "versionId": version}
    ids = [ref.split("/")[1] for t in tasks if (ref := _focus(t)) and ref.startswith("Bundle/")]
    event = audit_event(moves, request, now, client_id, tenant_labels(request.pharmacy))
    entries = [cas_entry(t, m) for t, m in zip(tasks, moves, strict=True)]
    entries.append({"resource": event, "request": {"method": "POST", "url": "AuditEvent"}})
    if ids:
        entries.append({"request": {"method": "GET", "url": f"Bundle?_id={','.join(ids)}&_count={len(ids)}"}})
    status, answer = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if status in (409, 412):
        return None
    if status != 200 or not isinstance(answer, dict):
        raise FhirError(503, f"The FHIR store refused the release ({status})", headers={"Retry-After": "5"})
    results = answer.get("entry") or []
    for moved, result in zip(moves, results, strict=False):
        stored = _etag_version(result)
        if stored is not None:
            moved["meta"]["versionId"] = stored
    read = results[-1].get("resource") if ids and len(results) == len(entries) else None
    found = {b.get("id"): b for b in _matches(_searchset(read), "Bundle")}
    messages = [found[i] for i in ids if i in found]
    if len(messages) != len(ids):  # a store that did not answer the read: ask again
        messages = _messages(store, moves)
    return moves, messages


def _next_version(task: dict[str, Any]) -> str | None:
    """The version an update of ``task`` makes: the store counts versions 1, 2, 3…"""
    version = str((task.get("meta") or {}).get("versionId") or "")
    return str(int(version) + 1) if version.isdigit() else None


def _searchset(bundle: object) -> list[dict]:
    if not isinstance(bundle, dict):
        return []
    return [
        e["resource"]
        for e in bundle.get("entry") or []
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and (e.get("search") or {}).get("mode", "match") == "match"
    ]


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
    task, message, medication_requests = _prescription(store, request.short_id)
    state = business_status(task)
    if state is not BusinessStatus.TO_BE_DISPENSED and not (
        state is BusinessStatus.WITH_DISPENSER and owner_ods(task) == request.pharmacy
    ):
        raise _refusal_for(store, task)
    moved = released_task(task, request, now)
    entries = [cas_entry(task, moved)]
    labelled: list[dict[str, Any]] = []
    if message is not None and request.pharmacy not in tenants_of(message):
        labelled.append(with_tenant(message, request.pharmacy))
        labelled.extend(
            with_tenant(mr, request.pharmacy)
            for mr in medication_requests
            if request.pharmacy not in tenants_of(mr)
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
    entries.append(audit_entry(moved, request, now, client_id))
    status, answer = store.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if status in (409, 412):
        # someone moved it (or relabelled a part) first: answer from what it is now
        again = _matches(store.search("Task", [("_id", str(task.get("id")))], count=1), "Task")
        current = again[0] if again else task
        if (
            business_status(current) is BusinessStatus.WITH_DISPENSER
            and owner_ods(current) == request.pharmacy
        ):
            raise ReleaseRefused(retry_later())
        raise _refusal_for(store, current)
    if status >= 300 or not isinstance(answer, dict):
        raise FhirError(503, f"The FHIR store refused the release ({status})", headers={"Retry-After": "5"})
    first = (answer.get("entry") or [{}])[0]
    moved["meta"] = {**moved.get("meta", {}), "versionId": _etag_version(first)}
    if message is not None and labelled:
        message = labelled[0]
    return Released(messages=[message] if message is not None else [], tasks=[moved])


def _prescription(
    store: Store, short_id: str
) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
    """The prescription's tracking Task, then its message and MedicationRequests in one batch of
    reads by id (one store request, not one per resource type)."""
    found = store.search(
        "Task",
        [
            ("group-identifier", f"{PRESCRIPTION_ID_SYSTEM}|{short_id}"),
            ("_tag", f"{TRACKING_TAG['system']}|{TRACKING_TAG['code']}"),
        ],
        count=2,
    )
    tasks = _matches(found, "Task")
    if not tasks:
        raise ReleaseRefused(not_found())
    task = tasks[0]
    focus = _focus(task)
    reads = ([focus] if focus and focus.startswith("Bundle/") else []) + [
        f"MedicationRequest/{i}" for i in _input_ids(task)
    ]
    if not reads:
        return task, None, []
    status, answer = store.transaction(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": url}} for url in reads],
        }
    )
    results = (answer or {}).get("entry") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(results, list) or len(results) != len(reads):
        raise FhirError(
            503, f"The FHIR store failed a look-up ({status}); retry shortly", headers={"Retry-After": "5"}
        )
    resources = [
        r
        for e in results
        if isinstance(e, dict)
        and str((e.get("response") or {}).get("status", "")).startswith("200")
        and isinstance(r := e.get("resource"), dict)
    ]
    message = next((r for r in resources if r.get("resourceType") == "Bundle"), None)
    return task, message, _matches(resources, "MedicationRequest")


def nominated_query(pharmacy: str) -> list[tuple[str, str]]:
    """The pharmacy's queue: nominated to it, not released yet, oldest first."""
    return [("identifier", f"{RELEASE_QUEUE_SYSTEM}|{pharmacy}"), ("_sort", "authored-on,_id")]


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
        "entry": [cas_entry(t, m) for t, m in zip(tasks, moves, strict=True)],
    }


def cas_entry(task: dict[str, Any], moved: dict[str, Any]) -> dict[str, Any]:
    """The transaction entry that moves ``task`` to ``moved`` only if it is still the version read."""
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


def _etag_version(result: dict[str, Any]) -> str | None:
    response = result.get("response") or {}
    etag = response.get("etag")
    if isinstance(etag, str):
        return etag.removeprefix("W/").strip('"')
    location = response.get("location")
    if isinstance(location, str) and "/_history/" in location:
        return location.rsplit("/", 1)[1]
    return None


def _input_ids(task: dict[str, Any]) -> list[str]:
    """The ids of the MedicationRequests the tracking Task names."""
    return [
        ref.split("/")[1]
        for i in task.get("input") or []
        if isinstance(ref := (i.get("valueReference") or {}).get("reference"), str)
        and ref.startswith("MedicationRequest/")
    ]


def _medication_requests(store: Store, task: dict[str, Any]) -> list[dict[str, Any]]:
    ids = _input_ids(task)
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
            eps_outcome(
                "business-rule",
                "error",
                EPS_ISSUE_CODES,
                "PRESCRIPTION_DISPENSED",
                "Prescription has been dispensed",
            )
        )
    return ReleaseRefused(not_found())  # cancelled, expired, not dispensed: nothing to release
