"""A completed MedicationDispense that covers its MedicationRequest completes the request, in the
same store transaction as the dispense, audited: the thin adapter of ``dispensing.completion``.

For a plain POST/PUT of a MedicationDispense and for each entry of a transaction alike: the
request its ``authorizingPrescription`` names (``MedicationRequest/<id>`` held here) is read, the
completed dispenses already stored against it are added to the ones being written, and when the
rule says the request is complete, the request's new status and an AuditEvent naming the client
are added as companion writes (``ctx.companion_writes``): the proxy sends them with the caller's
write in ONE transaction, so the dispense is never stored without its request updated, nor the
reverse. When the dispensing organisation only *reads* the request (a care relationship), the
update is granted to the store for that request alone (``ctx.completion_grants``): a rule-driven
update by the proxy, not a write the caller could make itself.

Hub-to-spoke messages are left to ``dispense_return``, which completes the spoke's own request.
``FHIRPLUG_COMPLETE_ON_DISPENSE=off`` switches this off.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from careaccess.labels import readable_by, tenants_of
from dispensing.completion import completes
from hubspoke.identifiers import ODS_SYSTEM, TENANT_SYSTEM
from hubspoke.messages import HUB_TO_SPOKE
from hubspoke.tenants import TENANT_ROLES
from proxy.config import Settings
from proxy.context import RequestContext, WriteEntry
from proxy.hookspecs import hookimpl

_REQUEST_REF = re.compile(r"(?:^|/)MedicationRequest/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
AUDIT_SUBTYPE = {
    "system": "https://fhirplug.org/fhir/CodeSystem/hand-off",
    "code": "completed-by-dispense",
    "display": "MedicationRequest completed by its dispenses",
}


@dataclass
class _Notes:
    """The dispenses this request writes, per MedicationRequest id, and the requests completed."""

    written: dict[str, list[dict]] = field(default_factory=dict)
    completed: set[str] = field(default_factory=set)


class Completion:
    def __init__(self, enabled: bool | None = None):
        self._enabled_given = enabled is not None
        self.enabled = enabled if enabled is not None else Settings.complete_on_dispense
        self.own_ods = ""

    @hookimpl
    def fhirplug_configure(self, settings: Settings) -> None:
        if not self._enabled_given:
            self.enabled = settings.complete_on_dispense
        self.own_ods = settings.own_ods

    @hookimpl(trylast=True)  # after tenancy has labelled and judged the dispense
    def fhirplug_before_storage(self, ctx: RequestContext, entry: WriteEntry) -> None:
        md = entry.resource
        if (
            not self.enabled
            or entry.method not in ("POST", "PUT")
            or entry.conditional  # a conditional update may match a dispense already counted
            or not isinstance(md, dict)
            or md.get("resourceType") != "MedicationDispense"
            or md.get("status") != "completed"
            or (ctx.message is not None and ctx.message.kind == HUB_TO_SPOKE)
        ):
            return None
        if entry.if_none_exist and ctx.store.search("MedicationDispense", entry.if_none_exist, count=1):
            return None  # it matches a dispense already stored (and counted): the store creates none
        notes = ctx.notes(_Notes)
        for ref in md.get("authorizingPrescription") or []:
            m = _REQUEST_REF.search(str((ref or {}).get("reference") or ""))
            if m is None or m.group(1) in notes.completed:
                continue  # a request created in this same transaction has no dispenses yet to count
            request_id = m.group(1)
            request = ctx.store.read("MedicationRequest", request_id)
            if request is None or not self._may_see(ctx, request):
                continue  # tenancy answers the reference as one to a missing resource
            notes.written.setdefault(request_id, []).append(md)
            stored = [
                d
                for d in ctx.store.search(
                    "MedicationDispense",
                    [("prescription", f"MedicationRequest/{request_id}"), ("status", "completed")],
                )
                if entry.resource_id is None or d.get("id") != entry.resource_id
            ]
            if not completes(request, [*stored, *notes.written[request_id]]):
                continue
            notes.completed.add(request_id)
            self._complete(ctx, entry, request)
        return None

    def _may_see(self, ctx: RequestContext, request: dict) -> bool:
        if ctx.client.role in TENANT_ROLES:
            return bool(ctx.client.ods) and readable_by(request, str(ctx.client.ods))
        return ctx.client.role == "admin"

    def _complete(self, ctx: RequestContext, entry: WriteEntry, request: dict) -> None:
        request_id = str(request["id"])
        version = (request.get("meta") or {}).get("versionId")
        done = copy.deepcopy(request)
        done["status"] = "completed"
        put = {"resource": done, "request": {"method": "PUT", "url": f"MedicationRequest/{request_id}"}}
        if version:
            put["request"]["ifMatch"] = f'W/"{version}"'  # a request changed meanwhile: nothing stored
        ctx.companion_writes.append(put)
        ods = ctx.client.ods or ""
        if ctx.client.role in TENANT_ROLES and ods not in tenants_of(request):
            ctx.completion_grants.add(f"MedicationRequest/{request_id}")
        if entry.method == "POST" and not entry.full_url:
            entry.full_url = f"urn:uuid:{uuid.uuid4()}"  # the audit names the new dispense by it
        dispense = entry.full_url if entry.method == "POST" else entry.url.split("?", 1)[0]
        audit = self._audit(ctx, request, dispense)
        ctx.companion_writes.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": audit,
                "request": {"method": "POST", "url": "AuditEvent"},
            }
        )

    def _audit(self, ctx: RequestContext, request: dict, dispense: str | None) -> dict:
        """Who completed which request by which dispense; seen by the prescriber and the dispenser."""
        ods = ctx.client.ods or ""
        entity = [{"what": {"reference": f"MedicationRequest/{request['id']}"}}]
        if dispense:
            entity.append({"what": {"reference": dispense}})
        agent = {
            "requestor": True,
            "altId": ctx.client.id or "",  # the client, as in every other AuditEvent here
            "who": {"identifier": {"system": ODS_SYSTEM, "value": ods}} if ods else {"display": "admin"},
        }
        observer = self.own_ods or "fhirplug"
        labels = sorted(tenants_of(request) | ({ods} if ods else set()))
        return {
            "resourceType": "AuditEvent",
            "meta": {"security": [{"system": TENANT_SYSTEM, "code": t} for t in labels]},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [dict(AUDIT_SUBTYPE)],
            "action": "U",
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "outcome": "0",
            "agent": [agent],
            "source": {"observer": {"identifier": {"system": ODS_SYSTEM, "value": observer}}},
            "entity": entity,
        }


completion = Completion()
