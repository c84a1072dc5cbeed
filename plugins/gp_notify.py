"""GP notifications over MESH, the pharmacy's side (issue 14): the trigger on store and
``POST [base]/{Immunization|MedicationDispense|Encounter}/[id]/$notify-gp``.

The rules are ``gpnotify``'s (which writes start a notification, reading what the builders need,
the records, queueing once); this module wires them in:

- **only with a MESH mailbox** (``FHIRPLUG_MESH_MAILBOX`` and its credentials): without one nothing
  here runs and ``$notify-gp`` is 404 as an unknown operation would be;
- **trigger on store** (``FHIRPLUG_GP_NOTIFY``, on by default): after a tenant's write of a
  notifiable resource (``gpnotify.gather``'s rule) is stored, the notification is built from the
  stored data, its outbox record and tracking Communication written in one store transaction, and
  its delivery queued — all before the write is answered. A write is never failed by this: a
  notification that cannot be built (no practice, no mailbox) is logged, and ``$notify-gp`` on the
  same resource says why;
- **``$notify-gp``**: the tenant that owns the resource (read as that tenant: another's is 404)
  triggers or re-sends it; the answer is a ``Parameters``: the tracking ``Communication``, the
  message id, what happened (``queued``, ``already-queued``, ``already-sent``) and the ITK message
  (STU3 XML, as an attachment: it is not an R4 resource). No practice, no mailbox for the practice
  and workflow, a missing element: 422 with the element, and nothing is recorded or queued.

It answers ``$notify-gp`` from ``fhirplug_request``, so it is listed before ``tenancy`` (the default
list does): tenancy closes operations to tenant roles.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from gpnotify import gather, mailboxes, sending, tracking
from gpnotify.gather import Notification
from gpnotify.itk import Sender
from gpnotify.mesh import MeshTransport, MeshTransportError
from hubspoke.tenants import TENANT_ROLES
from proxy.config import MeshSettings, Settings
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.operations import advertise, require_post
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.gp_notify")
OPERATION = "$notify-gp"
CAPABILITY = {"name": "notify-gp", "definition": "https://fhirplug.org/fhir/OperationDefinition/notify-gp"}
LOOKUP_TIMEOUT_S = 5.0  # a request waits this long at most for MESH's endpoint lookup


@dataclass
class _Notes:
    done: set[str] = field(default_factory=set)  # message ids handled in this request (a transaction)


class GpNotify(UsesRedis):
    def __init__(
        self,
        redis: Redis | None = None,
        mesh: MeshSettings | None = None,
        trigger: bool | None = None,
        lookup: Callable[[str, str], str | None] | None = None,
    ):
        """Values given here (unit tests) win over the app's (``fhirplug_configure``); ``lookup``
        stands in for MESH's endpoint lookup."""
        self._redis = redis
        self.mesh = mesh
        self.trigger = trigger
        self._lookup = lookup

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        self.mesh = self.mesh or settings.mesh
        self.trigger = settings.gp_notify if self.trigger is None else self.trigger

    @property
    def enabled(self) -> bool:
        return self.mesh is not None and self.mesh.configured

    # ------------------------------------------------------------------ $notify-gp

    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.kind != "operation" or i.operation != OPERATION or not self.enabled:
            return None
        if i.resource_type not in gather.TYPES or i.id is None:
            raise FhirError(
                404,
                f"{OPERATION} is an operation on an Immunization, MedicationDispense or Encounter instance",
                code="not-supported",
            )
        require_post(ctx, f"{i.resource_type}/[id]/{OPERATION}")
        client = ctx.client
        if client.role not in TENANT_ROLES or not client.ods:
            raise FhirError(
                403,
                f"{OPERATION} is for the pharmacy that stored the resource, not the {client.role} role",
                code="forbidden",
            )
        tenant = ctx.store.as_caller(client.role, client.ods)
        focus = tenant.read(i.resource_type, i.id)
        if focus is None:  # absent, or another tenant's: the same answer
            raise FhirError(404, f"{i.resource_type}/{i.id} is not known", code="not-found")
        notification = gather.build(tenant, focus, self._sender(client.ods))
        self._require_mailbox(notification)
        what = self._record_and_queue(ctx, notification, client.ods, resend=True)
        comm = ctx.store.as_caller(client.role, client.ods).read(
            "Communication", tracking.communication_id(notification.message.message_id)
        )
        return ProxyResponse.from_resource(200, _answer(notification, comm, what))

    # ------------------------------------------------------------------ the trigger

    @hookimpl
    def fhirplug_after_storage(self, ctx: RequestContext, entry, outcome) -> None:
        if not (self.enabled and self.trigger and outcome.ok and entry.resource_type in gather.TYPES):
            return
        client = ctx.client
        if client.role not in TENANT_ROLES or not client.ods:
            return  # only a pharmacy's own writes are its notifications
        if entry.resource is not None and entry.method != "PATCH" and not gather.might_start(entry.resource):
            return  # cheap: most writes of these types start nothing (before any store read)
        stored_id = _id_of(outcome.location, entry.resource_type) or entry.resource_id
        if not stored_id:
            return
        tenant = ctx.store.as_caller(client.role, client.ods)  # a fresh reader: the stored version
        focus = tenant.read(entry.resource_type, stored_id)
        if focus is None or gather.kind_of(focus) is None:
            return
        try:
            notification = gather.build(tenant, focus, self._sender(client.ods))
            if notification.message.message_id in ctx.notes(_Notes).done:
                return  # another dispense of the same consultation in this transaction
            self._require_mailbox(notification)
            self._record_and_queue(ctx, notification, client.ods, resend=False)
        except FhirError as exc:
            log.warning(
                "GP notification not sent",
                extra={
                    "fields": {
                        "event": "gp_notification_refused",
                        "resource": f"{entry.resource_type}/{stored_id}",
                        "status": exc.status,
                        "reason": str(exc)[:500],
                        "request_id": ctx.request_id,
                    }
                },
            )

    # ------------------------------------------------------------------ shared

    def _sender(self, ods: str) -> Sender:
        assert self.mesh is not None
        return Sender(ods, self.mesh.mailbox)

    def _require_mailbox(self, n: Notification) -> None:
        """422 when MESH knows no mailbox for the practice and workflow. MESH unreachable: the
        worker looks again (and retries), so the notification is still queued."""
        m = n.message
        try:
            found = mailboxes.lookup(self.redis, m.receiver_ods, m.workflow_id, self._ask_mesh)
        except MeshTransportError as exc:
            log.warning("MESH endpoint lookup failed; the worker will look again: %s", exc)
            return
        if found is None:
            raise FhirError(
                422,
                f"MESH has no mailbox for GP practice {m.receiver_ods} and workflow {m.workflow_id}: "
                "the practice cannot receive this notification",
                ["Patient.generalPractitioner"],
                code="not-found",
            )

    def _ask_mesh(self, ods: str, workflow_id: str) -> str | None:
        if self._lookup is not None:
            return self._lookup(ods, workflow_id)
        assert self.mesh is not None
        settings = MeshSettings(
            **{**self.mesh.__dict__, "timeout_s": min(self.mesh.timeout_s, LOOKUP_TIMEOUT_S)}
        )
        with MeshTransport(settings) as mesh:
            return mesh.lookup_mailbox(ods, workflow_id)

    def _record_and_queue(self, ctx: RequestContext, n: Notification, ods: str, *, resend: bool) -> str:
        """The outbox record and the Communication in one transaction (the intent is durable before
        anyone is answered), then the job. A Communication already past ``preparation`` is kept;
        a failed one is started again only by an explicit re-send."""
        ctx.notes(_Notes).done.add(n.message.message_id)
        delivery = sending.delivery_for(n, ods, ctx.request_id)
        existing = ctx.store.as_caller(ctx.client.role, ods).read(
            "Communication", tracking.communication_id(n.message.message_id)
        )
        status = (existing or {}).get("status")
        if status in (tracking.SENT, tracking.ACKNOWLEDGED) or (status == tracking.FAILED and not resend):
            return "already-sent" if status != tracking.FAILED else "failed"
        code, answer = ctx.store.transaction(
            sending.records(n, delivery, ods, with_communication=status != tracking.QUEUED)
        )
        if code >= 300:
            raise FhirError(503, f"The FHIR store did not record the notification ({code}); retry shortly")
        try:
            return sending.queue_once(delivery, self.redis)
        except Exception:  # recorded: the outbox sweep queues it
            log.exception("could not queue a GP notification; the outbox sweep will")
            return "queued"

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        """List the operation on each type in the CapabilityStatement the store answers."""
        if ctx.interaction.kind == "capabilities" and self.enabled:
            for rtype in gather.TYPES:
                advertise(response, CAPABILITY, on_type=rtype)


def _id_of(location: str | None, resource_type: str | None) -> str | None:
    if not location or not resource_type or f"{resource_type}/" not in location:
        return None
    return location.split(f"{resource_type}/", 1)[1].split("/")[0] or None


def _answer(n: Notification, comm: dict | None, what: str) -> dict:
    params: list[dict] = [
        {"name": "message-id", "valueString": n.message.message_id},
        {"name": "outcome", "valueCode": what},
        {
            "name": "practice",
            "valueIdentifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                "value": n.message.receiver_ods,
            },
        },  # fmt: skip
        {
            "name": "message",
            "valueAttachment": {
                "contentType": "application/fhir+xml; fhirVersion=3.0",
                "data": base64.b64encode(n.message.xml()).decode(),
                "title": f"{n.message.kind.event} ITK3 message {n.message.message_id}",
            },
        },
    ]
    if comm is not None:
        params.insert(0, {"name": "communication", "resource": comm})
    return {"resourceType": "Parameters", "parameter": params}


gp_notify = GpNotify()
