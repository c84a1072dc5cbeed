"""EPS ``Task/$release``: the answers (the seed's searchset, EPS's Parameters and its errors)
and the audit record of a release."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from eps.records import (
    tenant_labels,
)
from eps.release_request import (
    AUDIT_SUBTYPE,
    EPS_ISSUE_CODES,
    SPINE_CODES,
    SUPPORTING_INFO,
    Released,
    ReleaseRequest,
    Store,
    tenants_of,
)
from hubspoke.identifiers import ODS_SYSTEM

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


def eps_outcome(code: str, severity: str, system: str, eps_code: str, display: str) -> dict[str, Any]:
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
    return eps_outcome("not-found", "error", SPINE_CODES, "RESOURCE_NOT_FOUND", "Resource not found")


def no_more_prescriptions() -> dict[str, Any]:
    return eps_outcome(
        "informational",
        "information",
        EPS_ISSUE_CODES,
        "NO_MORE_PRESCRIPTIONS",
        "No more prescriptions available",
    )


def retry_later() -> dict[str, Any]:
    outcome = eps_outcome(
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
    outcome = eps_outcome(
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


def audit_entry(
    task: dict[str, Any], request: ReleaseRequest, now: str, client_id: str | None
) -> dict[str, Any]:
    # in the same transaction as the Task: the versioned entity is not known yet, the Task is;
    # labelled as the Task is, so whoever sees the prescription sees who took it
    unversioned = {**task, "meta": {k: v for k, v in (task.get("meta") or {}).items() if k != "versionId"}}
    event = audit_event([unversioned], request, now, client_id, tenant_labels(*tenants_of(task)))
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
    if not released.tasks or released.audited:
        return  # nothing released, or its event was stored in the release's own transaction
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
