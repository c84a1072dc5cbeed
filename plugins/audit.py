"""An AuditEvent for each hand-off between organisations, findable by standard FHIR search
(``AuditEvent?entity=Task/1``, ``AuditEvent?altid=<client_id>``, ``AuditEvent?subtype=...``).

A hub-and-spoke message (received at the hub; dispensed, at the spoke) gets its AuditEvent as
one more entry of the same transaction, so the record exists exactly when the message was
stored. A Task update (accepted, rejected, progressed, completed, failed, cancelled) is recorded
once the store has it. Each event names the partner organisation (ODS code) and client id, this
deployment as the observer, and the Task; it carries the Task's tenant labels, so the
organisations that see the Task see its history of hand-offs too.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM, TENANT_SYSTEM
from proxy.config import Settings
from proxy.context import RequestContext, StorageOutcome, WriteEntry
from proxy.hookspecs import hookimpl

log = logging.getLogger("fhirplug.audit")
MESSAGE_HANDOFF = {"spoke-to-hub": "received", "hub-to-spoke": "dispensed"}
STATUS_HANDOFF = {
    "accepted": "accepted",
    "rejected": "rejected",
    "received": "received",
    "in-progress": "progressed",
    "on-hold": "progressed",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}


def audit_event(
    ctx: RequestContext, handoff: str, task_ref: str, own_ods: str, labels: list | None = None
) -> dict:
    client = ctx.client
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": HANDOFF_SYSTEM, "code": handoff}],
        "action": "C" if handoff in ("received", "dispensed") else "U",
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0",
        "agent": [
            {
                "who": {
                    "identifier": {"system": ODS_SYSTEM, "value": client.ods or ""},
                    "display": f"client {client.id}",
                },
                "altId": client.id,
                "requestor": True,
            }
        ],
        "source": {"observer": {"identifier": {"system": ODS_SYSTEM, "value": own_ods or "unknown"}}},
        "entity": [{"what": {"reference": task_ref}, "description": f"request {ctx.request_id}"}],
    }
    if not client.ods:
        del event["agent"][0]["who"]["identifier"]
    if labels:
        event["meta"] = {"security": labels}
    return event


class Audit:
    requires = ("message",)

    def __init__(self, own_ods: str | None = None):
        """``own_ods`` given here (unit tests) wins over the app's (``fhirplug_configure``)."""
        self._own_ods_given = own_ods is not None
        self.own_ods = own_ods if own_ods is not None else Settings.own_ods

    @hookimpl
    def fhirplug_configure(self, settings: Settings) -> None:
        if not self._own_ods_given:
            self.own_ods = settings.own_ods

    @hookimpl(trylast=True)  # after the other bundle rules have amended and added what they will
    def fhirplug_before_bundle(self, ctx: RequestContext, bundle: dict) -> None:
        handoff = MESSAGE_HANDOFF.get(ctx.message.kind) if ctx.message else None
        if handoff is None:
            return None
        task_ref = self._task_reference(bundle)
        if task_ref is None:
            return None
        event = audit_event(ctx, handoff, task_ref, self.own_ods)
        request = {"method": "POST", "url": "AuditEvent"}
        bundle["entry"].append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": event, "request": request})
        return None

    @staticmethod
    def _task_reference(bundle: dict) -> str | None:
        for e in bundle.get("entry") or []:
            req = e.get("request") or {}
            res = e.get("resource") or {}
            if res.get("resourceType") == "Task" and e.get("fullUrl"):
                return e["fullUrl"]  # the store turns it into the Task's id
            url = str(req.get("url", ""))
            if url.startswith(("Task/", "Task?")):
                # a conditional reference (Task?identifier=...) is resolved by the store in the transaction
                return url.split("/_history")[0]
        return None

    @hookimpl
    def fhirplug_after_storage(self, ctx: RequestContext, entry: WriteEntry, outcome: StorageOutcome) -> None:
        if ctx.interaction.kind not in ("patch", "update") or entry.resource_type != "Task" or not outcome.ok:
            return
        task = outcome.resource if isinstance(outcome.resource, dict) else entry.resource or {}
        handoff = STATUS_HANDOFF.get(task.get("status") or "", "updated")  # no status: "updated"
        security = (task.get("meta") or {}).get("security") or []
        labels = [s for s in security if s.get("system") == TENANT_SYSTEM]
        ctx.store.create(audit_event(ctx, handoff, f"Task/{task.get('id')}", self.own_ods, labels))


audit = Audit()
