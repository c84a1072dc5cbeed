"""The hub-and-spoke Task state machine, role-aware: who may move a Task from which status to
which, and which elements each party may change.

Parties. The spoke pharmacy is the Task's *requester*; the hub pharmacy is its *owner* (the
performer). A client that is both (a test harness, a single-site deployment) is ``"both"`` and
may make any legal move and change the union of what the two may change.

State machine (FHIR R4 Task, https://hl7.org/fhir/R4/task.html#statemachine, cut down to the
hub-and-spoke workflow)::

    requested   -> received | accepted | rejected     owner (hub)
    received    -> accepted | rejected                owner
    accepted    -> in-progress                        owner
    in-progress -> on-hold | completed | failed       owner
    on-hold     -> in-progress                        owner
    requested | received | accepted -> cancelled      requester (spoke)

* Only the requester cancels: ``cancelled`` means "the spoke withdrew its request". The hub's
  ways out are ``rejected`` (before work starts) and ``failed`` (after). Once the hub has
  started (``in-progress``/``on-hold``) the spoke can no longer cancel: it must ask the hub,
  which then ends the Task ``failed``.
* ``rejected``, ``cancelled``, ``completed`` and ``failed`` are final: nothing moves out.
* ``draft``, ``ready`` and ``entered-in-error`` are FHIR codes the workflow does not use: no
  move leads to or from them.
* Keeping the status is not a transition (a progress note, a new ``businessStatus`` while
  ``in-progress``); what such an update may touch is the business of :func:`check_changes`.
  A Task in a final status, though, accepts no change at all (the NHS England guidance: reject
  PATCHes from terminal states); :func:`check_task_update` enforces that, while an exact replay
  (nothing changed) still passes so a retried request is harmless.

Refusals are :class:`proxy.errors.FhirError`: 409 ``conflict`` for a move the state machine
does not have, 403 ``forbidden`` for a legal move or a change by the wrong party, 422 for a
status code that is not a Task status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fhirpatch.json_values import json_equal
from hubspoke.tenants import ReadsResources, ods_of_reference
from proxy.context import Client
from proxy.errors import FhirError

_MISSING = object()

#: Every code of http://hl7.org/fhir/task-status (R4), in the code system's order.
STATUSES: tuple[str, ...] = (
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
)

#: Statuses a Task never leaves.
FINAL_STATUSES = frozenset({"rejected", "cancelled", "completed", "failed"})

OWNER = "owner"
REQUESTER = "requester"
BOTH = "both"
ACTORS = frozenset({OWNER, REQUESTER, BOTH})

#: (from, to) -> the one party that may make the move. Pairs not listed are not moves.
TRANSITIONS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("requested", "received"): OWNER,
        ("requested", "accepted"): OWNER,
        ("requested", "rejected"): OWNER,
        ("received", "accepted"): OWNER,
        ("received", "rejected"): OWNER,
        ("accepted", "in-progress"): OWNER,
        ("in-progress", "on-hold"): OWNER,
        ("in-progress", "completed"): OWNER,
        ("in-progress", "failed"): OWNER,
        ("on-hold", "in-progress"): OWNER,
        ("requested", "cancelled"): REQUESTER,
        ("received", "cancelled"): REQUESTER,
        ("accepted", "cancelled"): REQUESTER,
    }
)

#: Top-level Task elements each party may change (``both``: the union).
ALLOWED_CHANGES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        OWNER: frozenset(
            {"status", "businessStatus", "statusReason", "output", "note", "executionPeriod", "lastModified"}
        ),
        REQUESTER: frozenset({"status", "note", "lastModified"}),
    }
)

#: Elements that never count as a change: the store manages them.
IGNORED_ELEMENTS = frozenset({"meta", "text", "id"})


def _check_actor(actor: str) -> None:
    if actor not in ACTORS:
        raise ValueError(f"actor must be one of {sorted(ACTORS)}, not {actor!r}")


def _acts_as(actor: str, party: str) -> bool:
    return actor in (BOTH, party)


def _status_code(status: object, which: str) -> str:
    """``status`` when it is a Task status code; 422 when it is missing or anything else."""
    if status is None:
        raise FhirError(422, f"the {which} Task has no status", ["Task.status"], "required")
    if not isinstance(status, str) or status not in STATUSES:
        raise FhirError(
            422,
            f"the {which} Task's status {status!r} is not a Task status code "
            f"(http://hl7.org/fhir/task-status: {', '.join(STATUSES)})",
            ["Task.status"],
            "code-invalid",
        )
    return status


def check_transition(old: object, new: object, actor: str) -> None:
    """Refuse moving a Task from ``old`` to ``new`` by ``actor`` (owner, requester or both).

    Keeping the status is not a move and passes here; 409 for a move the state machine does not
    have, 403 when the move exists but belongs to the other party; 422 when either is missing or
    not a Task status code (they come straight from the stored and the sent Task).
    """
    _check_actor(actor)
    old = _status_code(old, "stored")
    new = _status_code(new, "updated")
    if old == new:
        return
    party = TRANSITIONS.get((old, new))
    if party is None:
        if old in FINAL_STATUSES:
            why = f"'{old}' is a final status"
        else:
            legal = sorted(to for (frm, to) in TRANSITIONS if frm == old)
            why = (
                f"from '{old}' it may move to: {', '.join(legal)}"
                if legal
                else f"hub-and-spoke does not use '{old}'"
            )
        raise FhirError(409, f"Task cannot move from '{old}' to '{new}' ({why})", ["Task.status"], "conflict")
    if not _acts_as(actor, party):
        raise FhirError(
            403,
            f"only the {party} may move a Task from '{old}' to '{new}'"
            f" (the {party} is the {'hub' if party == OWNER else 'spoke'} pharmacy;"
            f" this client is the {actor})",
            ["Task.status"],
            "forbidden",
        )


# ---------------------------------------------------------------- element changes


def changed_elements(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """Top-level element names whose value differs between ``old`` and ``new`` (added, removed or
    changed), leaving out meta, text and id. A primitive's extension (``_status``) counts as its
    element (``status``)."""
    changed = set()
    for key in set(old) | set(new):
        name = key[1:] if key.startswith("_") else key
        if name in IGNORED_ELEMENTS:
            continue
        if not json_equal(old.get(key, _MISSING), new.get(key, _MISSING)):
            changed.add(name)
    return changed


def _allowed(actor: str) -> frozenset[str]:
    if actor == BOTH:
        return ALLOWED_CHANGES[OWNER] | ALLOWED_CHANGES[REQUESTER]
    return ALLOWED_CHANGES[actor]


def check_changes(old: Mapping[str, Any], new: Mapping[str, Any], actor: str) -> None:
    """403 listing every top-level element ``actor`` changed but may not."""
    _check_actor(actor)
    allowed = _allowed(actor)
    forbidden = changed_elements(old, new) - allowed
    if forbidden:
        rtype = old.get("resourceType") or "Task"
        names = sorted(forbidden)
        raise FhirError(
            403,
            f"the {actor} may not change {', '.join(f'{rtype}.{e}' for e in names)}"
            f" (it may change only: {', '.join(sorted(allowed))})",
            [f"{rtype}.{e}" for e in names],
            "forbidden",
        )


def check_task_update(old: Mapping[str, Any], new: Mapping[str, Any], actor: str) -> None:
    """Everything a Task update must pass: the elements ``actor`` changed, the status move, and
    nothing at all changing once the Task is in a final status."""
    check_changes(old, new, actor)
    check_transition(old.get("status"), new.get("status"), actor)
    if old["status"] in FINAL_STATUSES:
        changed = changed_elements(old, new)
        if changed:
            raise FhirError(
                409,
                f"Task is '{old['status']}', a final status, and can no longer change"
                f" (this update changes {', '.join(sorted(changed))})",
                [f"Task.{e}" for e in sorted(changed)],
                "conflict",
            )


# ---------------------------------------------------------------- who is acting


def actor_of(client: Client, task: Mapping[str, Any], store: ReadsResources | None) -> str:
    """owner, requester or both, from the client's ODS code and the Task's organisations."""
    if client.role == "admin":
        return BOTH
    owner = ods_of_reference(task.get("owner"), None, store)
    requester = ods_of_reference(task.get("requester"), None, store)
    is_owner, is_requester = client.ods is not None and client.ods == owner, client.ods == requester
    if is_owner and is_requester:
        return BOTH
    if is_owner:
        return OWNER
    if is_requester:
        return REQUESTER
    raise FhirError(403, "Only the Task's owner or requester may change it", ["Task.owner"], code="forbidden")
