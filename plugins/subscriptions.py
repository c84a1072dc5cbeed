"""Event notifications (the Backport IG's topic-based Subscriptions), wired into the hooks: the
thin adapter of ``subscriptions``.

- **Subscriptions are fhirplug's, not the store's.** A write of a Subscription (create, update,
  delete) is answered here, before tenancy (which closes operations to tenants): the body is
  checked (``subscriptions.resource``), the Subscription is stored labelled to the tenant that
  wrote it (through the store's own tenancy line, acting as that tenant), recorded in Redis
  (``subscriptions.registry``) and its handshake queued; the worker makes it ``active`` or
  ``error``. The store itself runs no subscriptions (its launcher enables no channel type), so it
  never delivers anything. Reads and searches of Subscriptions go through like any resource:
  tenancy shows a tenant its own.
- ``Subscription/[id]/$status`` (and ``Subscription/$status``) and ``Subscription/[id]/$events``
  are answered from Redis, for the subscription's owner (or an administrator) only; to anyone
  else a subscription is unknown (404), as a missing one.
- **Matching** after the store has answered a write (``fhirplug_after_storage``): a create or
  update of a topic's resource type is checked against the active subscriptions on that type
  (kept in this process, re-read only when a Subscription changed: ``registry.ActiveCache``);
  each match is numbered and recorded, and its delivery queued (``subscriptions.queue``).
  Nothing here can fail the caller's write: failures are logged (see the hook contract).
- The topics, ``$status`` and ``$events`` are listed in the CapabilityStatement.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis import Redis

from hubspoke.identifiers import TENANT_SYSTEM
from hubspoke.tenants import TENANT_ROLES, forbidden, tenants_of
from proxy.config import Settings
from proxy.context import RequestContext, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.operations import advertise, json_body
from proxy.partners import PartnerDirectory
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse
from subscriptions import bundles, matching, queue, registry
from subscriptions import resource as subscription
from subscriptions.resource import Spec
from subscriptions.topics import TOPIC_TYPES, TOPICS

log = logging.getLogger("fhirplug.subscriptions")
TOPIC_CANONICAL = subscription.IG + "capabilitystatement-subscriptiontopic-canonical"
OPERATIONS = {
    "$status": {
        "name": "status",
        "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    },
    "$events": {
        "name": "events",
        "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
    },
}
MAX_EVENTS = 500  # one $events answer; a subscriber asks again from where it got to
WRITERS = TENANT_ROLES | {"admin"}


class Subscriptions(UsesRedis):
    def __init__(self, redis: Redis | None = None, public_base_url: str | None = None):
        self._redis = redis
        self.public_base_url = public_base_url or ""
        self.active = registry.ActiveCache()

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        if not self.public_base_url:
            self.public_base_url = settings.public_base_url

    # ------------------------------------------------------------ Subscriptions and operations

    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.resource_type != "Subscription":
            return None
        if i.kind == "operation" and i.operation in OPERATIONS:
            self._caller(ctx)
            return self._status(ctx) if i.operation == "$status" else self._events(ctx)
        if i.kind in ("create", "update", "patch", "delete"):
            self._caller(ctx)
            if i.conditional or ctx.request.header("if-none-exist"):
                raise FhirError(400, "Subscriptions are written by id, not conditionally", ["Subscription"])
            if i.kind == "patch":
                raise FhirError(
                    405, "A Subscription is changed with PUT (it is checked again)", headers={"Allow": "PUT"}
                )
            if i.kind == "delete":
                return self._delete(ctx)
            return self._write(ctx)
        return None  # reads and searches: tenancy shows a tenant its own

    def _caller(self, ctx: RequestContext) -> None:
        if ctx.client.role not in WRITERS or (ctx.client.role != "admin" and not ctx.client.ods):
            raise forbidden(
                f"Subscriptions are for tenants and administrators, not the {ctx.client.role} role"
            )

    def _owner(self, ctx: RequestContext) -> str:
        return "" if ctx.client.role == "admin" else str(ctx.client.ods)

    def _store(self, ctx: RequestContext):
        """The store as the caller: its own tenancy line judges the Subscription's writes."""
        if ctx.client.role == "admin":
            return ctx.store
        return ctx.store.as_caller(str(ctx.client.role), ctx.client.ods)

    def _partner_of(self, endpoint: str) -> str | None:
        for p in PartnerDirectory(self.redis).all():
            base = p.base_url.rstrip("/")
            if endpoint == base or endpoint.startswith(base + "/"):
                return p.ods
        return None

    def _visible(self, ctx: RequestContext, sid: str | None) -> Spec:
        """The subscription, if the caller owns it (or is an admin); 404 otherwise, as for none."""
        spec = registry.get(self.redis, sid) if sid else None
        if spec is None or (ctx.client.role != "admin" and spec.owner != ctx.client.ods):
            raise FhirError(404, f"Subscription/{sid} is not known", code="not-found")
        return spec

    def _write(self, ctx: RequestContext) -> ProxyResponse:
        i = ctx.interaction
        body = json_body(ctx, "Subscription", "A Subscription is needed")
        owner = self._owner(ctx)
        store = self._store(ctx)
        if i.kind == "update":
            sid = str(i.id)
            if isinstance(body, dict) and body.get("id") != sid:
                raise FhirError(400, "The Subscription's id must be the id in the URL", ["Subscription.id"])
            current = store.read("Subscription", sid)
            if current is not None:
                owners = tenants_of(current)
                if ctx.client.role != "admin" and owner not in owners:
                    raise FhirError(404, f"Subscription/{sid} is not known", code="not-found")
                owner = next(iter(sorted(owners)), "")  # an administrator's change keeps the owner
            elif ctx.client.role != "admin" and registry.get(self.redis, sid) is not None:
                raise FhirError(404, f"Subscription/{sid} is not known", code="not-found")
        else:
            sid = str(uuid.uuid4())
        spec = subscription.parse(body, sid, owner, self._partner_of, self.public_base_url)
        labels = [{"system": TENANT_SYSTEM, "code": owner}] if owner else []
        stored = store.put(subscription.stored_form(body, spec, labels))
        # numbering goes on across changes of a Subscription: a subscriber never sees a number twice
        registry.save(self.redis, spec)
        if spec.status == "requested":
            queue.enqueue_handshake(self.redis, sid)
        meta = (stored or {}).get("meta") or {}
        version = meta.get("versionId", "1")
        headers = {"Location": f"{self.public_base_url}/Subscription/{sid}/_history/{version}"}
        if meta.get("versionId"):
            headers["ETag"] = f'W/"{version}"'
        status = 201 if i.kind == "create" or version == "1" else 200
        log.info(
            "subscription written",
            extra={
                "fields": {"event": "subscription", "subscription": sid, "topic": spec.topic, "owner": owner}
            },
        )
        return ProxyResponse.from_resource(
            status, stored or subscription.stored_form(body, spec, labels), headers
        )

    def _delete(self, ctx: RequestContext) -> ProxyResponse:
        sid = str(ctx.interaction.id)
        store = self._store(ctx)
        current = store.read("Subscription", sid)
        if current is None or (ctx.client.role != "admin" and ctx.client.ods not in tenants_of(current)):
            raise FhirError(404, f"Subscription/{sid} is not known", code="not-found")
        store.delete("Subscription", sid)
        registry.remove(self.redis, sid)
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"Subscription/{sid} deleted",
                }
            ],
        }
        return ProxyResponse.from_resource(200, outcome)

    def _status(self, ctx: RequestContext) -> ProxyResponse:
        i = ctx.interaction
        if i.id is not None:
            specs = [self._visible(ctx, i.id)]
        else:
            wanted = [s for v in ctx.request.query if v[0] == "id" for s in v[1].split(",") if s]
            everyone = registry.all_specs(self.redis)
            specs = [
                s
                for s in everyone
                if (ctx.client.role == "admin" or s.owner == ctx.client.ods)
                and (not wanted or s.id in wanted)
            ]
        entries = []
        for spec in specs:
            one = bundles.status_searchset(spec, self.public_base_url, registry.latest(self.redis, spec.id))
            entries.extend(one["entry"])
        return ProxyResponse.from_resource(
            200, {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        )

    def _events(self, ctx: RequestContext) -> ProxyResponse:
        i = ctx.interaction
        if i.id is None:
            raise FhirError(
                400, "$events is asked of one Subscription: Subscription/[id]/$events", ["Subscription"]
            )
        spec = self._visible(ctx, i.id)
        latest = registry.latest(self.redis, spec.id)
        first = _number(ctx, "eventsSinceNumber", 1)
        last = min(_number(ctx, "eventsUntilNumber", latest), latest, first + MAX_EVENTS - 1)
        content = ctx.request.param("content") or spec.content
        if content not in subscription.CONTENTS:
            raise FhirError(400, f"content is one of {', '.join(subscription.CONTENTS)}", ["content"])
        found = registry.events(self.redis, spec.id, first, last)
        bundle = bundles.notification(spec, self.public_base_url, "query-event", latest, found, content)
        return ProxyResponse.from_resource(200, bundle)

    @hookimpl
    def fhirplug_before_bundle(self, ctx: RequestContext, bundle: dict) -> FhirError | None:
        for n, e in enumerate(bundle.get("entry") or []):
            if not isinstance(e, dict):
                continue
            url = str((e.get("request") or {}).get("url") or "")
            method = str((e.get("request") or {}).get("method") or "")
            rtype = (
                (e.get("resource") or {}).get("resourceType") if isinstance(e.get("resource"), dict) else None
            )
            if method != "GET" and ("Subscription" in (rtype, url.split("?")[0].split("/")[0])):
                return FhirError(
                    422,
                    "Subscriptions are written one at a time (POST or PUT Subscription): checked there",
                    [f"Bundle.entry[{n}].request"],
                    code="not-supported",
                )
        return None

    # ------------------------------------------------------------ matching

    @hookimpl
    def fhirplug_after_storage(self, ctx: RequestContext, entry: WriteEntry, outcome: StorageOutcome) -> None:
        rtype = entry.resource_type
        if not outcome.ok or entry.method == "DELETE" or rtype not in TOPIC_TYPES:
            return
        candidates = self.active.for_type(self.redis, str(rtype))
        if not candidates:
            return
        current = self._stored(ctx, str(rtype), outcome)
        if current is None:
            log.warning("a %s write's stored version could not be read; no notification", rtype)
            return
        version = int(str((current.get("meta") or {}).get("versionId") or "1"))
        created = outcome.status == 201 or version == 1
        previous = None if created else ctx.store.read(str(rtype), f"{current['id']}/_history/{version - 1}")
        for spec, filters in candidates:
            if matching.matches(spec, filters, current, previous):
                n = queue.record_and_wake(self.redis, spec.id, matching.event_for(spec, current, created))
                log.info(
                    "event recorded",
                    extra={"fields": {"event": "subscription_event", "subscription": spec.id, "number": n}},
                )

    def _stored(self, ctx: RequestContext, rtype: str, outcome: StorageOutcome) -> dict[str, Any] | None:
        """The resource as stored: the store's answer, or (a transaction entry) its version read."""
        res = outcome.resource
        if isinstance(res, dict) and res.get("resourceType") == rtype and res.get("id"):
            return res
        path = (outcome.location or "").split("/_history/")
        parts = path[0].rstrip("/").split("/")
        if len(parts) < 2 or parts[-2] != rtype:
            return None
        rid = parts[-1]
        if len(path) > 1 and path[1]:
            return ctx.store.read(rtype, f"{rid}/_history/{path[1].split('/')[0]}")
        return ctx.store.read(rtype, rid)

    # ------------------------------------------------------------ discovery

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        if ctx.interaction.kind != "capabilities" or response.status != 200 or not response.is_json:
            return
        for capability in OPERATIONS.values():
            advertise(response, capability, on_type="Subscription")
        cs = response.resource
        rest = (cs or {}).get("rest") or [{}]
        holder = next(
            (
                r
                for r in rest[0].get("resource") or []
                if isinstance(r, dict) and r.get("type") == "Subscription"
            ),
            None,
        )
        if cs is None or holder is None:
            return
        exts = holder.setdefault("extension", [])
        for url in TOPICS:
            ext = {"url": TOPIC_CANONICAL, "valueCanonical": url}
            if ext not in exts:
                exts.append(ext)
        response.resource = cs


def _number(ctx: RequestContext, name: str, default: int) -> int:
    raw = ctx.request.param(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise FhirError(400, f"{name} is an event number (1 or more)", [name])
    return int(raw)


subscriptions = Subscriptions()
