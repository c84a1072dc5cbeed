"""The hub's dispense bundle arriving at the spoke: each MedicationDispense is linked to the spoke's
own MedicationRequest, and a completed dispense completes its MedicationRequest, in the same
transaction (all or nothing).

The Task PATCH of that bundle is resolved and judged by ``task_workflow`` (a url that names no
Task is refused by ``message_checks``; one that matches none, by ``task_workflow`` with 404).
"""

from __future__ import annotations

from hubspoke.messages import HUB_TO_SPOKE
from hubspoke.tenants import TENANT_ROLES, narrowing
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl


def completes(mr_id: str) -> dict:
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "MedicationRequest.status"},
                    {"name": "value", "valueCode": "completed"},
                ],
            }
        ],
    }
    return {"resource": patch, "request": {"method": "PATCH", "url": f"MedicationRequest/{mr_id}"}}


class DispenseReturn:
    requires = ("message",)

    @hookimpl
    def fhirplug_before_bundle(self, ctx: RequestContext, bundle: dict) -> None:
        if ctx.message is None or ctx.message.kind != HUB_TO_SPOKE:
            return None
        completed: list[str] = []
        problems: list[tuple[str, list[str]]] = []
        for i, e in enumerate(bundle.get("entry") or []):
            md = e.get("resource") or {}
            if md.get("resourceType") != "MedicationDispense":
                continue
            for j, ref in enumerate(md.get("authorizingPrescription") or []):
                where = f"Bundle.entry[{i}].resource.authorizingPrescription[{j}]"
                mr_id = self._resolve(ctx, ref)
                if mr_id is None:
                    named = ref.get("identifier") or ref.get("reference")
                    problems.append((f"No MedicationRequest here matches {named}", [where]))
                    continue
                ref["reference"] = f"MedicationRequest/{mr_id}"
                if md.get("status") == "completed" and mr_id not in completed:
                    completed.append(mr_id)
        if problems:
            raise FhirError.many(422, problems, code="not-found")
        bundle["entry"].extend(completes(mr_id) for mr_id in completed)
        return None

    def _resolve(self, ctx: RequestContext, ref: dict) -> str | None:
        target = ref.get("reference")
        if isinstance(target, str) and target.startswith("MedicationRequest/"):
            return target.split("/")[1]
        ident = ref.get("identifier") or {}
        if not ident.get("value"):
            return None
        token = f"{ident.get('system', '')}|{ident['value']}" if ident.get("system") else ident["value"]
        query = [("identifier", token)]
        if ctx.client.role in TENANT_ROLES and ctx.client.ods:
            query.append(narrowing(ctx.client.ods))
        found = ctx.store.search("MedicationRequest", query)
        return found[0]["id"] if len(found) == 1 else None


dispense_return = DispenseReturn()
