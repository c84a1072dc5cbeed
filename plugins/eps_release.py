"""EPS ``POST [base]/Task/$release``, served by the proxy itself: a pharmacy takes prescriptions.

The rules are ``eps.release``'s; this module wires them in: who may call (dispensing systems,
role ``dispenser``, for their own pharmacy only), the body, which identity each step acts as,
the answer's form, and the operation's line in the CapabilityStatement.

- A **nominated** release acts as the pharmacy (``ctx.store.as_caller("dispenser", ODS)``): the
  store's own tenancy line judges every search and update, so even a bug here could not hand a
  pharmacy what is not labelled for it.
- A **patient** release looks the prescription up as the proxy itself: it is not labelled for
  this pharmacy until it is released to it (the release adds the label).

It answers from ``fhirplug_request``, so it must be listed before ``tenancy`` in FHIRPLUG_PLUGINS
(the default list does): tenancy closes operations to tenant roles.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from eps import release as rules
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.operations import advertise, json_body, require_post
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.eps_release")
OPERATION = "$release"
CALLERS = frozenset({"dispenser"})
# how EPS names the operation (a type-level operation on Task)
CAPABILITY = {"name": "release", "definition": "https://fhir.nhs.uk/OperationDefinition/Task-release-message"}


class EpsRelease:
    def __init__(self, public_base_url: str | None = None):
        self.public_base_url = public_base_url

    @hookimpl
    def fhirplug_configure(self, settings: Settings) -> None:
        if self.public_base_url is None:
            self.public_base_url = settings.public_base_url

    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.kind != "operation" or i.operation != OPERATION or i.resource_type != "Task" or i.id is not None:
            return None
        require_post(ctx, f"Task/{OPERATION}")
        client = ctx.client
        if client.role not in CALLERS or not client.ods:
            raise FhirError(
                403,
                f"Task/{OPERATION} is for dispensing systems (role dispenser), not the {client.role} role",
                code="forbidden",
            )
        request = rules.parse(
            json_body(ctx, "Parameters", f"Task/{OPERATION} needs a Parameters body"),
            client.ods,
            ctx.request.param("response-shape"),
        )
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            if request.kind is rules.Kind.PATIENT:
                released = rules.release_patient(ctx.store, request, now=now, client_id=client.id)
            else:
                tenant = ctx.store.as_caller(client.role, client.ods)
                released = rules.release_nominated(tenant, request, now=now, client_id=client.id)
                try:
                    rules.write_audit(tenant, released, request, now, client.id)
                except (rules.AuditNotWritten, FhirError) as exc:
                    # the release stands: an error answer now would hide prescriptions it took
                    log.error(
                        "release audit events not stored (request %s, tasks %s): %s",
                        ctx.request_id,
                        [t.get("id") for t in released.tasks],
                        exc,
                    )
        except rules.ReleaseRefused as refused:
            return ProxyResponse.from_resource(refused.status, refused.outcome)
        self_url = f"{self.public_base_url}/Task/{OPERATION}" if self.public_base_url else None
        if request.shape is rules.Shape.EPS_PARAMETERS:
            return ProxyResponse.from_resource(200, rules.eps_parameters(released, self_url))
        return ProxyResponse.from_resource(200, rules.searchset(released, self_url))

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        """List the operation on Task in the CapabilityStatement the store answers for ``/metadata``."""
        if ctx.interaction.kind == "capabilities":
            advertise(response, CAPABILITY, on_type="Task")


eps_release = EpsRelease()
