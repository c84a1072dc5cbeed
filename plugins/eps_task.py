"""EPS return and withdraw, served by the proxy itself: ``POST [base]/Task`` by a dispenser.

A dispensing system (role ``dispenser``) changes prescriptions only through EPS's operations, and
EPS's return and withdraw are Task creations (its dispensing API). So every Task a dispenser
posts is taken here as one of them, judged by ``eps.task_return`` and answered as EPS answers
(an informational OperationOutcome); it never reaches the store as a Task of its own. Every other
Task write (spokes, hubs, administrators) passes on untouched to the hub-and-spoke plugins.

It answers from ``fhirplug_request``, so it is listed before ``tenancy`` (the default list does).
"""

from __future__ import annotations

from datetime import UTC, datetime

from eps import task_return
from eps.events import Sender
from eps.lifecycle import Conflict
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.operations import json_body
from proxy.response import ProxyResponse

CALLERS = frozenset({"dispenser"})


class EpsTask:
    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.kind != "create" or i.resource_type != "Task" or ctx.client.role not in CALLERS:
            return None
        sender = Sender(client_id=ctx.client.id or "", role=str(ctx.client.role), ods=ctx.client.ods or "")
        try:
            answer = task_return.handle(
                json_body(ctx, "Task", "A return or withdraw needs the Task as its body"),
                sender,
                ctx.store,
                datetime.now(UTC),
            )
        except Conflict as exc:
            exc.headers = {"Retry-After": "1"}
            raise
        return ProxyResponse.from_resource(200, answer)

    @hookimpl
    def fhirplug_before_bundle(self, ctx: RequestContext, bundle: dict) -> None:
        """A dispenser's Task writes are EPS's return and withdraw, one Task per request: never
        an entry of a transaction or batch (its ``Task.c`` scope would otherwise let one through
        to the store as a plain Task)."""
        if ctx.client.role not in CALLERS:
            return None
        for n, entry in enumerate(bundle.get("entry") or []):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or str(request.get("method", "")).upper() == "GET":
                continue
            url = str(request.get("url", "")).lstrip("/")
            if url.split("?")[0].split("/")[0] == "Task":
                raise FhirError(
                    403,
                    "A dispensing system returns or withdraws a prescription with POST [base]/Task, "
                    "one Task per request, not inside a transaction or batch",
                    [f"Bundle.entry[{n}].request"],
                    code="forbidden",
                )
        return None


eps_task = EpsTask()
