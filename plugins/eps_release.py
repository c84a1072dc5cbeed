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
from proxy import bodies, json_shapes
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
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
        if ctx.request.method != "POST":
            raise FhirError(
                405, f"Task/{OPERATION} takes POST, not {ctx.request.method}", headers={"Allow": "POST"}
            )
        client = ctx.client
        if client.role not in CALLERS or not client.ods:
            raise FhirError(
                403,
                f"Task/{OPERATION} is for dispensing systems (role dispenser), not the {client.role} role",
                code="forbidden",
            )
        request = rules.parse(_parameters(ctx), client.ods, ctx.request.param("response-shape"))
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
        if ctx.interaction.kind != "capabilities" or response.status != 200 or not response.is_json:
            return
        cs = response.resource
        if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
            return
        rest = cs.get("rest")
        if not isinstance(rest, list) or not rest or not isinstance(rest[0], dict):
            return
        for resource in rest[0].get("resource") or []:
            if isinstance(resource, dict) and resource.get("type") == "Task":
                operations = resource.setdefault("operation", [])
                if isinstance(operations, list) and CAPABILITY not in operations:
                    operations.append(dict(CAPABILITY))
                    response.resource = cs
                return


def _parameters(ctx: RequestContext) -> object:
    """The posted Parameters, parsed and shape-checked as every JSON body the proxy reads."""
    raw = ctx.request_body()
    has_body = bool(raw.strip())
    media_type = bodies.check_body_media_type(ctx.interaction, ctx.request.content_type, has_body)
    if not has_body:
        raise FhirError(400, f"Task/{OPERATION} needs a Parameters body", ["Parameters"])
    try:
        body = bodies.parse_json(raw)
    except FhirError as exc:
        exc.expression = exc.expression or ["Parameters"]
        raise
    json_shapes.check(body, media_type)
    return body


eps_release = EpsRelease()
