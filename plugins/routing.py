"""Routing between partner deployments: what this deployment stored, the other party hears of.

- A spoke-to-hub message our own spoke system sent us goes to the hub its Task names as owner
  (``POST [hub]/fhir``), carrying our Task's id so the hub can address it later.
- A change of a Task made here goes to the other party of that Task: the hub's acceptance,
  progress, completion or failure to the requesting spoke (``PATCH [spoke]/fhir/Task/[its id]``),
  a spoke's cancellation to the owning hub (``PATCH [hub]/fhir/Task?identifier=...``).
- A hub-to-spoke dispense message our own hub system sent us goes to the spoke that requested
  the Task (``POST [spoke]/fhir``).

Nothing is forwarded back to the party it came from. A spoke or hub with no entry in the partner
directory is a tenant of this deployment (an ICS hub hosting spokes that call it directly): it
reads its Tasks here and nothing is forwarded. A message our own spoke system addresses to a hub
that is neither us nor a partner is refused (422) at submit time: it could never be delivered.
The delivery itself is queued after the store has answered (``forwarding.queue``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl

from redis import Redis

from forwarding import metrics, outbox
from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import enqueue
from hubspoke import task_states
from hubspoke.identifiers import MESSAGE_ID_SYSTEM, PARTNER_TASK_SYSTEM, TENANT_SYSTEM
from hubspoke.messages import task_entry
from hubspoke.tenants import TENANT_ROLES, narrowing, ods_of_reference
from proxy.config import Settings
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.partners import PartnerDirectory
from proxy.redis_conn import UsesRedis

log = logging.getLogger("fhirplug.routing")
OURS = {MESSAGE_ID_SYSTEM, PARTNER_TASK_SYSTEM}
FORWARDED = task_states.ALLOWED_CHANGES["owner"] | task_states.ALLOWED_CHANGES["requester"]


def json_patch(old: dict, new: dict) -> list[dict]:
    """The changes of the elements a party may change, as a JSON Patch."""
    ops = []
    for name in sorted(task_states.changed_elements(old, new) & FORWARDED):
        if name in new:
            ops.append({"op": "add", "path": f"/{name}", "value": new[name]})
        else:
            ops.append({"op": "remove", "path": f"/{name}"})
    return ops


def shared_identifier(task: dict) -> dict | None:
    """The identifier both copies of the Task carry: the spoke's own (not one of ours)."""
    return next(
        (i for i in task.get("identifier") or [] if i.get("system") not in OURS and i.get("value")), None
    )


def path_at(partner_ods: str, task: dict) -> str:
    for ident in task.get("identifier") or []:
        if ident.get("system") == PARTNER_TASK_SYSTEM and str(ident.get("value", "")).startswith(
            partner_ods + "/"
        ):
            return "Task/" + ident["value"].split("/", 1)[1]
    shared = shared_identifier(task)
    if shared is None:
        raise FhirError(422, "This Task has no identifier its partner knows it by", ["Task.identifier"])
    return f"Task?identifier={shared.get('system', '')}|{shared['value']}"


def strip_labels(resource: dict) -> None:
    meta = resource.get("meta") or {}
    if "security" in meta:
        meta["security"] = [s for s in meta["security"] if s.get("system") != TENANT_SYSTEM]
        if not meta["security"]:
            del meta["security"]


@dataclass
class _Notes:
    """What routing remembers between a request's hooks."""

    delivery: Delivery | None = None  # the delivery whose outbox record this request writes
    stored_task_id: str | None = None  # the id the store gave the message's Task


class Routing(UsesRedis):
    requires = ("message",)

    def __init__(self, redis: Redis | None = None, own_ods: str | None = None):
        """``redis`` and ``own_ods`` given here (unit tests) win over the app's (``fhirplug_configure``)."""
        self._redis = redis
        self._own_ods_given = own_ods is not None
        self.own_ods = own_ods if own_ods is not None else Settings.own_ods

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        if not self._own_ods_given:
            self.own_ods = settings.own_ods

    def _partner(self, ods: str | None, where: list[str]) -> str:
        if not ods or PartnerDirectory(self.redis).deployment(ods) is None:
            raise FhirError(422, f"No partner {ods!r} in this deployment's directory to forward to", where)
        return ods

    def _own_client(self, ctx) -> bool:
        """The caller is one of our own systems, not a partner deployment."""
        return bool(self.own_ods) and ctx.client.ods == self.own_ods

    # ------------------------------------------------------------ decide before storing

    @hookimpl  # listed after the message checks (it needs the message's kind), before intake amends it
    def fhirplug_before_bundle(self, ctx, bundle):
        kind = ctx.message.kind if ctx.message else None
        if kind is None or not self._own_client(ctx):
            return None
        original = copy.deepcopy(bundle)  # what the partner gets: before our own amendments
        entry = task_entry(bundle)
        if kind == "spoke-to-hub" and entry is not None:
            owner = ods_of_reference(entry["resource"].get("owner"), bundle, ctx.store)
            if not owner or owner == self.own_ods:
                return None
            partner = self._partner(owner, ["Bundle.entry[0].resource.owner"])
            delivery = Delivery(
                partner,
                "POST",
                "",
                original,
                request_id=ctx.request_id,
                task_key=self._task_key(entry["resource"]),
                kind=DeliveryKind.SPOKE_TO_HUB,
            )
            self._outbox_entry(ctx, bundle, delivery, entry.get("fullUrl") or "")
        elif kind == "hub-to-spoke":
            task = self._patched_task(ctx, bundle)
            requester = ods_of_reference(task.get("requester"), None, ctx.store) if task else None
            if task is None or not requester or requester in (self.own_ods, ctx.client.ods):
                return None
            if PartnerDirectory(self.redis).deployment(requester) is None:
                return None  # the spoke is a tenant here
            delivery = Delivery(
                requester,
                "POST",
                "",
                original,
                request_id=ctx.request_id,
                task_key=self._task_key(task),
                kind=DeliveryKind.HUB_TO_SPOKE,
            )
            self._outbox_entry(ctx, bundle, delivery, f"Task/{task['id']}")
        return None

    def _outbox_entry(self, ctx, bundle: dict, delivery: Delivery, subject: str) -> None:
        """The intent to forward, stored in the same transaction as the message."""
        basic = outbox.record(delivery, subject)
        bundle["entry"].append(
            {"resource": basic, "request": {"method": "PUT", "url": f"Basic/{delivery.id}"}}
        )
        ctx.notes(_Notes).delivery = delivery

    def _patched_task(self, ctx, bundle: dict) -> dict | None:
        for e in bundle.get("entry") or []:
            url = str((e.get("request") or {}).get("url", ""))
            if (e.get("request") or {}).get("method") == "PATCH" and url.startswith("Task"):
                path, _, query = url.partition("?")
                if not query:
                    return ctx.store.read("Task", path.split("/")[1]) if "/" in path else None
                pairs = parse_qsl(query, keep_blank_values=True)
                if ctx.client.role in TENANT_ROLES and ctx.client.ods:
                    pairs.append(narrowing(ctx.client.ods))
                found = ctx.store.search("Task", pairs)
                return found[0] if len(found) == 1 else None
        return None

    @hookimpl(trylast=True)
    def fhirplug_before_storage(self, ctx, entry):
        if entry.index is not None or entry.resource_type != "Task" or entry.method != "PUT":
            return None
        if not isinstance(entry.resource, dict) or not entry.resource_id:
            return None
        task = entry.resource
        owner = ods_of_reference(task.get("owner"), None, ctx.store)
        requester = ods_of_reference(task.get("requester"), None, ctx.store)
        other = requester if owner == self.own_ods else owner if requester == self.own_ods else None
        if other is None or other == self.own_ods or other == ctx.client.ods:
            return None  # a local Task, or the change came from that very party
        if PartnerDirectory(self.redis).deployment(other) is None:
            return None  # a tenant here (an ICS hub hosting spokes): it reads its Task here
        current = ctx.store.read("Task", entry.resource_id)
        if current is None:
            return None
        patch = json_patch(current, task)
        if not patch:
            return None
        delivery = Delivery(
            other,
            "PATCH",
            path_at(other, task),
            patch,
            content_type="application/json-patch+json",
            request_id=ctx.request_id,
            task_key=self._task_key(task),
            kind=DeliveryKind.TASK_CHANGE,
            task_status=task.get("status"),
        )
        version = int((current.get("meta") or {}).get("versionId", "1")) + 1
        ctx.store.put(outbox.record(delivery, f"Task/{current['id']}", str(version)))  # before the Task
        ctx.notes(_Notes).delivery = delivery
        return None

    # ------------------------------------------------------------ forward after storing

    @hookimpl
    def fhirplug_after_storage(self, ctx, entry, outcome):
        notes = ctx.notes(_Notes)
        delivery = notes.delivery
        if delivery is None:
            return
        if entry.index is None:  # a Task change: its outbox record was written before it
            notes.delivery = None
            if outcome.ok:
                self._send(ctx, delivery)
            else:
                try:  # the change did not happen: nor will its delivery
                    ctx.store.delete("Basic", delivery.id)
                except FhirError:
                    log.warning("could not remove outbox record %s; the sweep will", delivery.id)
            return
        if entry.resource_type == "Task" and outcome.ok and outcome.location:
            notes.stored_task_id = outcome.location.split("Task/", 1)[-1].split("/")[0]
        if entry.resource_type == "Basic" and entry.resource_id == delivery.id and outcome.ok:
            notes.delivery = None
            their_task = task_entry(delivery.body) if isinstance(delivery.body, dict) else None
            if delivery.kind is DeliveryKind.SPOKE_TO_HUB and their_task and notes.stored_task_id:
                their_task["resource"]["id"] = notes.stored_task_id  # how the hub will address it
            self._send(ctx, delivery)

    def _task_key(self, task: dict) -> str | None:
        shared = shared_identifier(task)
        return f"{shared.get('system', '')}|{shared['value']}" if shared else None

    def _send(self, ctx, delivery: Delivery) -> None:
        # the write is stored: a failure to queue must not turn into an error the caller retries;
        # the outbox record is still pending and the sweep will queue it
        try:
            enqueue(delivery, self.redis)
        except Exception:
            log.exception("could not queue a delivery", extra={"fields": {"request_id": ctx.request_id}})

    # ------------------------------------------------------------ metrics

    @hookimpl
    def fhirplug_metrics(self, redis: Redis) -> str:
        """The forwarding metrics (queue, deliveries, latency) for GET /metrics."""
        return metrics.prometheus_text(redis)


routing = Routing()
