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
The delivery itself is queued after the store has answered (``worker.delivery``).
"""

from __future__ import annotations

import copy
import logging
import os

from redis import Redis

from plugins import task_rules
from plugins.intake import MESSAGE_ID_SYSTEM, PARTNER_TASK_SYSTEM, task_entry
from plugins.tenancy import TENANT_SYSTEM, ods_of_reference
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.partners import PartnerDirectory
from worker.delivery import Delivery, enqueue

log = logging.getLogger("fhirplug.routing")
OURS = {MESSAGE_ID_SYSTEM, PARTNER_TASK_SYSTEM}
FORWARDED = task_rules.ALLOWED_CHANGES["owner"] | task_rules.ALLOWED_CHANGES["requester"]


def json_patch(old: dict, new: dict) -> list[dict]:
    """The changes of the elements a party may change, as a JSON Patch."""
    ops = []
    for name in sorted(task_rules.changed_elements(old, new) & FORWARDED):
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


class Routing:
    def __init__(self, redis: Redis | None = None, own_ods: str | None = None):
        self._redis = redis
        self.own_ods = own_ods if own_ods is not None else os.environ.get("FHIRPLUG_ODS", "")

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        return self._redis

    def _partner(self, ods: str | None, where: list[str]) -> str:
        if not ods or PartnerDirectory(self.redis).get(ods) is None:
            raise FhirError(422, f"No partner {ods!r} in this deployment's directory to forward to", where)
        return ods

    def _own_client(self, ctx) -> bool:
        """The caller is one of our own systems, not a partner deployment."""
        return bool(self.own_ods) and ctx.client.ods == self.own_ods

    # ------------------------------------------------------------ decide before storing

    @hookimpl  # listed after the message checks (it needs the message's kind), before intake amends it
    def fhirplug_before_bundle(self, ctx, bundle):
        kind = ctx.state.get("hubspoke.kind")
        if kind is None or not self._own_client(ctx):
            return None
        original = copy.deepcopy(bundle)  # what the partner gets: before our own amendments
        entry = task_entry(bundle)
        if kind == "spoke-to-hub" and entry is not None:
            owner = ods_of_reference(entry["resource"].get("owner"), bundle, ctx.store)
            if owner and owner != self.own_ods:
                ctx.state["routing"] = (
                    "message",
                    self._partner(owner, ["Bundle.entry[0].resource.owner"]),
                    original,
                )
        elif kind == "hub-to-spoke":
            ctx.state["routing"] = (
                "dispense",
                None,
                original,
            )  # the spoke is the Task's requester: known later
        return None

    @hookimpl(trylast=True)
    def fhirplug_before_storage(self, ctx, entry):
        if entry.resource_type != "Task" or entry.method != "PUT" or not isinstance(entry.resource, dict):
            return None
        task = entry.resource
        owner = ods_of_reference(task.get("owner"), None, ctx.store)
        requester = ods_of_reference(task.get("requester"), None, ctx.store)
        other = requester if owner == self.own_ods else owner if requester == self.own_ods else None
        if other is None or other == self.own_ods or other == ctx.client.ods:
            return None  # a local Task, or the change came from that very party
        if PartnerDirectory(self.redis).get(other) is None:
            return (
                None  # the other party is a tenant here (an ICS hub hosting spokes): it reads its Task here
            )
        routing = ctx.state.get("routing")
        if routing and routing[0] == "dispense":
            ctx.state["routing"] = ("dispense", self._partner(other, ["Task.requester"]), routing[2])
        elif entry.index is None:
            current = ctx.store.read("Task", entry.resource_id) if entry.resource_id else None
            if current is not None:
                ctx.state["routing"] = ("task", self._partner(other, ["Task"]), (current, task))
        return None

    # ------------------------------------------------------------ forward after storing

    @hookimpl
    def fhirplug_after_storage(self, ctx, entry, outcome):
        routing = ctx.state.get("routing")
        if routing is None or not outcome.ok or routing[1] is None:
            return
        what, partner, payload = routing
        if what == "message" and entry.resource_type == "Task" and entry.method == "POST":
            message = payload
            their_task = task_entry(message)["resource"]
            location = outcome.location or ""
            their_task["id"] = location.split("Task/", 1)[-1].split("/")[0]  # how they will address it
            self._send(
                ctx,
                Delivery(
                    partner,
                    "POST",
                    "",
                    message,
                    request_id=ctx.request_id,
                    task_key=self._task_key(their_task),
                    what="spoke-to-hub message",
                ),
            )
        elif what == "dispense" and entry.resource_type == "Task":
            self._send(
                ctx,
                Delivery(
                    partner,
                    "POST",
                    "",
                    payload,
                    request_id=ctx.request_id,
                    task_key=self._task_key(entry.resource),
                    what="hub-to-spoke dispense",
                ),
            )
        elif what == "task" and entry.resource_type == "Task":
            old, new = payload
            patch = json_patch(old, new)
            if patch:
                self._send(
                    ctx,
                    Delivery(
                        partner,
                        "PATCH",
                        path_at(partner, new),
                        patch,
                        content_type="application/json-patch+json",
                        request_id=ctx.request_id,
                        task_key=self._task_key(new),
                        what=f"Task {new.get('status')}",
                    ),
                )
        ctx.state.pop("routing", None)

    def _task_key(self, task: dict) -> str | None:
        shared = shared_identifier(task)
        return f"{shared.get('system', '')}|{shared['value']}" if shared else None

    def _send(self, ctx, delivery: Delivery) -> None:
        # the write is stored: a failure to queue must not turn into an error the caller retries
        try:
            enqueue(delivery, self.redis)
        except Exception:
            log.exception("could not queue a delivery", extra={"fields": {"request_id": ctx.request_id}})


routing = Routing()
