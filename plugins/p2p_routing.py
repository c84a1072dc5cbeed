"""Point-to-point routing by rule: the thin adapter of ``p2p`` (the rule table, what is sent, what
a received dispense needs).

On a write (a plain POST/PUT, or each entry of a transaction) that makes a resource reach a rule's
status (``FHIRPLUG_ROUTING_RULES``), the partner the rule names is looked up in the partner
directory; when it is a partner deployment in a role the rule may send to, the resource as it can
be understood there (``p2p.outgoing``) is put in an outbox record written in the SAME store
transaction as the write (a companion write), and queued once stored. The existing forwarding
worker delivers it with our signed-JWT client (retries, dead letters, ``X-Delivery-ID``), and
the receiver's conditional create on the identifier keeps it to one copy there.

A destination with no partner entry is a tenant here (it reads by a care relationship) and
nothing is sent; nor is anything sent to ourselves or back to the organisation that wrote it.
Hub-and-spoke messages are ``routing``'s.

Its ``fhirplug_before_storage`` is a pluggy wrapper, so where it is listed does not matter for
that hook: before every other plugin, an ``authorizingPrescription`` given by identifier is
linked to the request it names (``p2p.incoming``), so that tenancy shares the dispense with the
prescriber and completion completes the request, both of which read the literal reference; after
all of them (labels set, completion decided, nothing refused), the rules are applied to the
resource as it will be stored.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from forwarding import outbox
from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import enqueue
from hubspoke.identifiers import TENANT_SYSTEM
from hubspoke.tenants import TENANT_ROLES, ods_of_reference
from p2p import incoming, outgoing
from p2p.rules import Rule, fires, select
from proxy.config import Settings
from proxy.context import RequestContext, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.partners import PartnerDirectory
from proxy.redis_conn import UsesRedis

log = logging.getLogger("fhirplug.p2p")


@dataclass
class _Notes:
    """The deliveries this request's writes will make, by entry (None: a plain write)."""

    pending: dict[int | None, list[Delivery]] = field(default_factory=dict)


class P2PRouting(UsesRedis):
    requires = ("message",)  # hub-and-spoke messages are routing's, not ours

    def __init__(
        self, redis: Redis | None = None, rules: Iterable[str] | None = None, own_ods: str | None = None
    ):
        """Values given here (unit tests) win over the app's (``fhirplug_configure``)."""
        self._redis = redis
        self._rules_given = rules is not None
        self.rules: tuple[Rule, ...] = select(rules or ())
        self._own_ods_given = own_ods is not None
        self.own_ods = own_ods or ""

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        if not self._rules_given:
            self.rules = select(settings.routing_rules)  # an unknown rule stops the proxy at start
        if not self._own_ods_given:
            self.own_ods = settings.own_ods

    @hookimpl(wrapper=True)
    def fhirplug_before_storage(
        self, ctx: RequestContext, entry: WriteEntry
    ) -> Generator[None, Any, FhirError | None]:
        self._link(ctx, entry)
        refusal = yield
        if refusal is None:
            self._route(ctx, entry)
        return refusal

    @hookimpl
    def fhirplug_after_storage(self, ctx: RequestContext, entry: WriteEntry, outcome: StorageOutcome) -> None:
        deliveries = ctx.notes(_Notes).pending.pop(entry.index, [])
        if not outcome.ok:
            return  # the outbox record was in the same transaction: it was not stored either
        for delivery in deliveries:
            # stored: a failure to queue must not become an error the caller retries; the outbox
            # record is pending and the sweep will queue it
            try:
                enqueue(delivery, self.redis)
            except Exception:
                log.exception("could not queue a delivery", extra={"fields": {"request_id": ctx.request_id}})

    # ------------------------------------------------------------ a received dispense

    def _link(self, ctx: RequestContext, entry: WriteEntry) -> None:
        md = entry.resource
        if (
            entry.method not in ("POST", "PUT")
            or not isinstance(md, dict)
            or md.get("resourceType") != "MedicationDispense"
            or ctx.message is not None
        ):
            return
        role, ods = ctx.client.role, ctx.client.ods
        if role in TENANT_ROLES and ods:
            store = ctx.store.as_caller(role, ods)  # only what the writer may read can be named
        elif role == "admin":
            store = ctx.store
        else:
            return

        def find(system: str, value: str) -> list[dict]:
            return store.search("MedicationRequest", [("identifier", f"{system}|{value}")], count=2)

        try:
            incoming.link_prescriptions(md, find)
        except incoming.AmbiguousPrescription as exc:
            raise FhirError(422, str(exc), [exc.expression], code="business-rule") from exc

    # ------------------------------------------------------------ a write a rule sends on

    def _route(self, ctx: RequestContext, entry: WriteEntry) -> None:
        resource = entry.resource
        if (
            not self.rules
            or entry.method not in ("POST", "PUT")
            or entry.conditional
            or not isinstance(resource, dict)
            or ctx.message is not None
        ):
            return
        rules = [r for r in self.rules if r.resource_type == resource.get("resourceType")]
        if not rules:
            return
        old = None
        if entry.method == "PUT" and entry.resource_id:
            old = ctx.store.read(str(resource["resourceType"]), entry.resource_id)
        bundle = ctx.body if ctx.interaction.kind == "transaction" and isinstance(ctx.body, dict) else None
        for rule in rules:
            if not fires(rule, resource, old):
                continue
            ods = rule.find(
                resource, lambda ref: ods_of_reference(ref, bundle, ctx.store), self._reader(ctx, bundle)
            )
            if not ods or ods in (self.own_ods, ctx.client.ods):
                continue  # never to ourselves, never back to who wrote it
            partner = PartnerDirectory(self.redis).get(ods)
            if partner is None or partner.role not in rule.partner_roles:
                continue  # a tenant here: it reads by a care relationship, nothing to send
            self._outbox(ctx, entry, rule, ods, bundle)

    def _outbox(self, ctx: RequestContext, entry: WriteEntry, rule: Rule, ods: str, bundle: Any) -> None:
        resource = entry.resource
        assert isinstance(resource, dict)
        rtype = rule.resource_type
        identifier = outgoing.shared_identifier(resource)
        if identifier is None:
            raise FhirError(
                422,
                f"This {rtype} goes to {ods} by the rule {rule.name}, and the receiving system keeps "
                "the sender's identifier: it needs an identifier with a system and a value",
                [f"{rtype}.identifier"],
                code="business-rule",
            )
        read = self._reader(ctx, bundle)
        try:
            body = outgoing.portable(resource, lambda target: read({"reference": target}, ""))
        except outgoing.UnportableReference as exc:
            raise FhirError(
                422, f"This {rtype} goes to {ods} by the rule {rule.name}: {exc}", [exc.expression]
            ) from exc
        delivery = Delivery(
            ods,
            "POST",
            "",
            outgoing.transaction(body, identifier),
            request_id=ctx.request_id,
            task_key=f"{identifier['system']}|{identifier['value']}",  # its deliveries keep their order
            kind=DeliveryKind.ROUTED,
        )
        record = outbox.record(delivery, "")
        record["subject"] = {"type": rtype, "identifier": identifier}  # known before it has an id
        if ctx.client.role in TENANT_ROLES and ctx.client.ods:
            # written with the caller's write, so labelled as the caller's (the store's line asks it)
            record["meta"] = {"security": [{"system": TENANT_SYSTEM, "code": ctx.client.ods}]}
        ctx.companion_writes.append(
            {"resource": record, "request": {"method": "PUT", "url": f"Basic/{delivery.id}"}}
        )
        ctx.notes(_Notes).pending.setdefault(entry.index, []).append(delivery)
        log.info(
            "routed by rule",
            extra={"fields": {"rule": rule.name, "partner": ods, "delivery": delivery.id}},
        )

    def _reader(self, ctx: RequestContext, bundle: Any):
        """Reads a Reference here: a ``Type/id`` in the store, a ``urn:uuid`` among the bundle's
        entries (``type`` checked when given)."""

        def read(ref: Any, rtype: str) -> dict | None:
            target = ref.get("reference") if isinstance(ref, dict) else None
            if not isinstance(target, str):
                return None
            found: dict | None = None
            if target.startswith("urn:uuid:"):
                for e in (bundle or {}).get("entry") or []:
                    if isinstance(e, dict) and e.get("fullUrl") == target:
                        found = e.get("resource")
            else:
                parts = target.split("/_history/")[0].split("/")
                if len(parts) == 2 and all(parts):
                    found = ctx.store.read(parts[0], parts[1])
            if not isinstance(found, dict) or (rtype and found.get("resourceType") != rtype):
                return None
            return found

        return read


p2p_routing = P2PRouting()
