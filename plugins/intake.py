"""Intake of hub-and-spoke messages: each one stored exactly once, however often it is sent.

A message is known by its sender and ``Bundle.identifier``. The first copy claims that key in
Redis (``SET NX``) and is processed; a copy that arrives while it is being processed waits for
its result; a copy that arrives later gets the first result again, and nothing is stored
twice. The same identifier with different content is a conflict (409). If Redis lost its
record, the Task the first copy stored still carries the message identifier, and a resubmission
is answered from the store instead of being stored again.

A spoke-to-hub message arriving here is also made this deployment's: ``Task.owner`` is set to
our ODS code when absent (and must name us when present, on a hub), and the spoke's own Task id
is kept as a Task identifier so the two copies of the Task correlate. Success is 201 ("received
and persisted", as the hub-and-spoke design says) with the transaction-response.

A message's plain creates of a Patient or an Organization are made conditional on its NHS Number
or ODS code (``hubspoke.business_identifiers``): a repeat patient or pharmacy resolves to the
record already stored (tenancy narrows the criteria to the caller's own records, so nothing of
another tenant's is matched or revealed). When the caller's records hold two or more with that
identifier, the store cannot tell which is meant: the answer is a 412 naming the entry and the
identifier, and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote

import simplejson
from redis import Redis
from redis.exceptions import RedisError

from hubspoke.business_identifiers import ConditionalCreate, make_conditional
from hubspoke.identifiers import MESSAGE_ID_SYSTEM, ODS_SYSTEM, PARTNER_TASK_SYSTEM
from hubspoke.messages import task_entry
from hubspoke.tenants import ods_of_reference
from proxy.config import Settings
from proxy.errors import FhirError, operation_outcome
from proxy.first_copy import first_result, owe_release, settle_releases
from proxy.hookspecs import hookimpl
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.intake")
PENDING_TTL_S = 120  # a claim no result followed (a crash) expires; the store check still guards
RESULT_TTL_S = 30 * 24 * 3600
WAIT_S = 30.0
# how long a copy waits for a first copy still under way before the store is asked whether it
# stored the message: copies sent together get the first copy's own answer, word for word
SETTLE_S = 0.5


def message_key(sender: str, identifier: dict) -> str:
    raw = f"{sender}\n{identifier.get('system', '')}\n{identifier.get('value', '')}"
    return "fhirplug:message:" + hashlib.sha256(raw.encode()).hexdigest()


def message_identifier_value(sender: str, identifier: dict) -> str:
    # no "|" inside: a token search would take it for the system separator
    return f"{sender}/{identifier.get('value', '')}"


@dataclass
class _Notes:
    claim: tuple[str, str] | None = None  # (Redis key, digest) of the message this request claimed
    conditional: list[ConditionalCreate] = field(default_factory=list)  # the creates made conditional


class Intake(UsesRedis):
    requires = ("message",)

    def __init__(self, redis: Redis | None = None, own_ods: str | None = None, role: str | None = None):
        """Values given here (unit tests) win over the app's (``fhirplug_configure``)."""
        self._redis = redis
        self._own_ods_given, self._role_given = own_ods is not None, role is not None
        self.own_ods = own_ods if own_ods is not None else Settings.own_ods
        self.role = role if role is not None else Settings.role

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        if not self._own_ods_given:
            self.own_ods = settings.own_ods
        if not self._role_given:
            self.role = settings.role

    # ------------------------------------------------------------ before the store

    @hookimpl
    def fhirplug_before_bundle(self, ctx, bundle):
        if ctx.message is None:
            return None
        kind = ctx.message.kind
        identifier = bundle.get("identifier") or {}
        if not isinstance(identifier, dict) or not identifier.get("value"):
            raise FhirError(
                400,
                "A hub-and-spoke message needs Bundle.identifier (a UUID): it is what makes a resend safe",
                ["Bundle.identifier"],
                code="required",
            )
        key = message_key(ctx.client.id or "", identifier)
        digest = ctx.message.digest
        sender = ctx.client.ods or ctx.client.id or ""
        try:
            settle_releases(self.redis)  # claims of failed copies this process could not release
            claimed = self.redis.set(
                key, json.dumps({"state": "pending", "digest": digest}), nx=True, ex=PENDING_TTL_S
            )
        except RedisError as exc:
            raise FhirError(
                503,
                "Message intake cannot check for resends now; retry shortly",
                headers={"Retry-After": "5"},
            ) from exc
        if not claimed:
            if self._pending_same(key, digest):
                # a first copy under way settles within moments of the store's answer: its own
                # answer is the one every copy gets. If it does not settle, the store is asked: a
                # first copy that stored the message (whatever became of its claim: Redis crashed
                # before its answer was kept) is answered from there at once
                try:
                    return self._earlier_answer(key, digest, SETTLE_S)
                except FhirError as exc:
                    if exc.status != 503:
                        raise
                earlier = self._stored_earlier(ctx, message_identifier_value(sender, identifier))
                if earlier is not None:
                    self._remember(key, digest, earlier)
                    return earlier
            return self._earlier_answer(key, digest)
        earlier = self._stored_earlier(ctx, message_identifier_value(sender, identifier))
        if earlier is not None:
            self._remember(key, digest, earlier)
            return earlier
        notes = ctx.notes(_Notes)
        notes.claim = (key, digest)
        notes.conditional = make_conditional(bundle)
        if kind == "spoke-to-hub":
            self._make_ours(ctx, bundle, message_identifier_value(sender, identifier))
        return None

    def _make_ours(self, ctx, bundle: dict, message_id: str) -> None:
        entry = task_entry(bundle)
        if entry is None:
            return
        task = entry["resource"]
        if not task.get("owner") and self.own_ods:
            task["owner"] = {"identifier": {"system": ODS_SYSTEM, "value": self.own_ods}}
        elif self.role == "hub" and self.own_ods:
            # the owner may be named by identifier or by reference (to an Organization in the
            # message or in the store): either way it must be this hub, or the Task is not ours
            owner_ods = ods_of_reference(task.get("owner"), bundle, ctx.store)
            if owner_ods is None:
                raise FhirError(
                    422,
                    f"This hub is {self.own_ods}; Task.owner names no organisation it can identify",
                    ["Task.owner"],
                )
            if owner_ods != self.own_ods:
                raise FhirError(
                    422,
                    f"This hub is {self.own_ods}; the Task names {owner_ods} as its owner",
                    ["Task.owner"],
                )
        ids = task.setdefault("identifier", [])
        ids.append({"system": MESSAGE_ID_SYSTEM, "value": message_id})
        if task.get("id") and ctx.client.ods:
            ids.append({"system": PARTNER_TASK_SYSTEM, "value": f"{ctx.client.ods}/{task['id']}"})

    def _stored_earlier(self, ctx, value: str) -> ProxyResponse | None:
        """A Task the same message stored before, when Redis no longer remembers the answer."""
        found = ctx.store.search("Task", [("identifier", f"{MESSAGE_ID_SYSTEM}|{value}")])
        if not found:
            return None
        task = found[0]
        version = (task.get("meta") or {}).get("versionId", "1")
        body = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [
                {"response": {"status": "200 OK", "location": f"Task/{task['id']}/_history/{version}"}}
            ],
        }
        log.info("resend answered from the store", extra={"fields": {"event": "resend", "task": task["id"]}})
        return ProxyResponse.from_resource(201, body)

    def _pending_same(self, key: str, digest: str) -> bool:
        """The claim is still pending, for the same content (a conflict is judged by the wait)."""
        try:
            raw = self.redis.get(key)
            record = json.loads(raw) if raw else None
        except (RedisError, ValueError):
            return False
        return (
            isinstance(record, dict) and record.get("state") == "pending" and record.get("digest") == digest
        )

    def _earlier_answer(self, key: str, digest: str, wait_s: float | None = None) -> ProxyResponse:
        def same_content(record):
            if record.get("digest") != digest:
                raise FhirError(
                    409,
                    "This Bundle.identifier was already used for a message with other content",
                    ["Bundle.identifier"],
                    code="conflict",
                )

        wait = WAIT_S if wait_s is None else wait_s
        record = first_result(self.redis, key, "message", wait, same_content)
        log.info("resend answered with the first result", extra={"fields": {"event": "resend"}})
        return ProxyResponse.from_resource(record["status"], record["body"])

    def _remember(self, key: str, digest: str, response: ProxyResponse) -> None:
        record = {"state": "done", "digest": digest, "status": response.status, "body": response.resource}
        try:
            self.redis.set(key, simplejson.dumps(record, use_decimal=True), ex=RESULT_TTL_S)
        except RedisError:
            log.exception("could not record a message's result; a resend will be answered from the store")

    # ------------------------------------------------------------ after the store

    @hookimpl
    def fhirplug_response(self, ctx, response):
        notes = ctx.notes(_Notes)
        claim, notes.claim = notes.claim, None
        if claim is None:
            return
        key, digest = claim
        if response.status == 412 and notes.conditional:
            _name_the_ambiguous_identifier(response, notes.conditional)
        if 200 <= response.status < 300:
            response.status = 201  # the hub-and-spoke design: 201, received and persisted
            self._remember(key, digest, response)
        else:
            try:
                self.redis.delete(key)  # nothing was stored: a resend must be processed afresh
            except RedisError:
                log.warning("could not release a failed message's claim; released when Redis is back")
                owe_release(self.redis, key)


def _name_the_ambiguous_identifier(response: ProxyResponse, made: list[ConditionalCreate]) -> None:
    """The store refused a conditional create because its criteria matched several records:
    say which entry and identifier, and what to do, instead of the store's own wording."""
    # the store names the match URL it could not resolve (percent-encoded); the caller's criteria
    # are in it as system|value, beside the tenancy narrowing
    said = unquote(json.dumps(response.resource or {}))
    named = [c for c in made if f"{c.system}|{c.value}" in said] or made
    which = "; ".join(f"{c.resource_type} with identifier {c.system}|{c.value}" for c in named)
    response.resource = operation_outcome(
        f"More than one stored record matches {which}: the message cannot say which one it means, "
        "and nothing was stored. Merge or retire the duplicates, or send the entry with ifNoneExist "
        "criteria (or a reference) that pick one",
        code="duplicate",
        expression=[c.expression for c in named],
    )


intake = Intake()
