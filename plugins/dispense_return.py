"""The hub's dispense bundle arriving at the spoke: each MedicationDispense is linked to the spoke's
own MedicationRequest, and the dispenses that complete it (``dispensing.completion``, the rule
every dispense path shares: the quantity asked for, or the last expected) complete that
MedicationRequest, in the same transaction (all or nothing).

The Task PATCH of that bundle is resolved and judged by ``task_workflow`` (a url that names no
Task is refused by ``message_checks``; one that matches none, by ``task_workflow`` with 404).
"""

from __future__ import annotations

from dispensing.completion import completes as request_complete
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
        written: dict[str, list[dict]] = {}
        known: dict[str, dict | None] = {}
        problems: list[tuple[str, list[str]]] = []
        for i, e in enumerate(bundle.get("entry") or []):
            md = e.get("resource") or {}
            if md.get("resourceType") != "MedicationDispense":
                continue
            for j, ref in enumerate(md.get("authorizingPrescription") or []):
                where = f"Bundle.entry[{i}].resource.authorizingPrescription[{j}]"
                mr_id, request = self._resolve(ctx, ref)
                if mr_id is None:
                    named = ref.get("identifier") or ref.get("reference")
                    problems.append((f"No MedicationRequest here matches {named}", [where]))
                    continue
                ref["reference"] = f"MedicationRequest/{mr_id}"
                written.setdefault(mr_id, []).append(md)
                known.setdefault(mr_id, request)
        if problems:
            raise FhirError.many(422, problems, code="not-found")
        bundle["entry"].extend(
            completes(mr_id)
            for mr_id, mds in written.items()
            if self._complete(ctx, mr_id, known[mr_id], mds)
        )
        return None

    def _complete(self, ctx: RequestContext, mr_id: str, request: dict | None, mds: list[dict]) -> bool:
        """The dispenses of this message, and those stored before, complete the spoke's request."""
        if not any(md.get("status") == "completed" for md in mds):
            return False
        if request is None:
            request = ctx.store.read("MedicationRequest", mr_id)
        if request is None:
            return False
        before = ctx.store.search(
            "MedicationDispense", [("prescription", f"MedicationRequest/{mr_id}"), ("status", "completed")]
        )
        return request_complete(request, [*before, *mds])

    def _resolve(self, ctx: RequestContext, ref: dict) -> tuple[str | None, dict | None]:
        """The spoke's MedicationRequest a dispense names: its id, and the resource when looked up."""
        target = ref.get("reference")
        if isinstance(target, str) and target.startswith("MedicationRequest/"):
            return target.split("/")[1], None
        ident = ref.get("identifier") or {}
        if not ident.get("value"):
            return None, None
        token = f"{ident.get('system', '')}|{ident['value']}" if ident.get("system") else ident["value"]
        query = [("identifier", token)]
        if ctx.client.role in TENANT_ROLES and ctx.client.ods:
            query.append(narrowing(ctx.client.ods))
        found = ctx.store.search("MedicationRequest", query)
        return (found[0]["id"], found[0]) if len(found) == 1 else (None, None)


dispense_return = DispenseReturn()
