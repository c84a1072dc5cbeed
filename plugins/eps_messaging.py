"""EPS ``POST [base]/$process-message``, served by the proxy itself: the dispatcher.

The body is a FHIR message (``Bundle`` of type ``message``, ``MessageHeader`` first); the event
(``MessageHeader.eventCoding.code``) picks the handler in ``eps.events.HANDLERS``. This module
wires the exchange in, the rules being the domain's (``eps.messaging``, the handlers):

- **who**: the sender is the OAuth client (id, role, ODS code), never the message; its role must
  be one ``eps.events.SENDER_ROLES`` allows for the event (403 otherwise); an unknown event is 400;
- **exactly once by message id** (``Bundle.id``, per sender ODS): the first copy claims the key in
  Redis (``SET NX``); a copy arriving meanwhile waits for its result; a later copy gets the first
  answer again and changes nothing; other content under the same id is 409. When Redis has
  forgotten, the handler recognises the message in the store (a prescription-order's tracking
  Task carries the message key and content hash) and answers ``replayed``: nothing is done
  again. Only answers that changed something (2xx) are remembered: a refused message stored
  nothing, so a resend is judged afresh, with the same result;
- **synchronous** (no parameters): 200 with the response message (``response.code`` ok), or the
  handler's 4xx with a ``fatal-error`` response message carrying its OperationOutcome ("do not
  resubmit"); a store or Redis failure is a plain 503 OperationOutcome ("may resubmit").
  ``Prefer: return=OperationOutcome`` answers just the OperationOutcome, as EPS does;
- **asynchronous** (``?async=true``, optional ``response-url``): the message is processed and the
  response message's delivery recorded in the outbox in the SAME store transaction as the
  prescription (custody taken durably), then 202 Accepted with an informational OperationOutcome;
  the worker delivers the response message to the sender's registered partner endpoint
  (``response-url`` or ``MessageHeader.source.endpoint`` + ``/$process-message``, always with
  ``async=true``) with our signed-JWT client, retries and dead letters. The address must lie under
  the base URL of the sender's entry in the partner directory (``fhirplug partners add --role
  prescriber|dispenser``): a request never makes us call an address of its choosing (SSRF).
  A message that cannot be processed is answered at once with its HTTP error, as HL7 allows.

It answers from ``fhirplug_request``, so it must be listed before ``tenancy`` in FHIRPLUG_PLUGINS
(the default list does): tenancy closes operations to tenant roles.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import simplejson
from redis import Redis
from redis.exceptions import RedisError

from eps import messaging, order, records
from eps.certificates import load_trust_anchors
from eps.events import HANDLERS, SENDER_ROLES, EventResult, Sender
from forwarding import outbox
from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import enqueue
from hubspoke.identifiers import TENANT_SYSTEM
from proxy.config import EPS_TRUST_DIR_KEY, ConfigError, Settings
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.first_copy import first_result
from proxy.hookspecs import hookimpl
from proxy.operations import advertise, json_body, require_post
from proxy.partners import PartnerDirectory
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse

log = logging.getLogger("fhirplug.eps_messaging")
OPERATION = "$process-message"
CALLERS = frozenset().union(*SENDER_ROLES.values())
PARAMETERS = ("async", "response-url")
PENDING_TTL_S = 120  # a claim no result followed (a crash) expires; the store check still guards
RESULT_TTL_S = 30 * 24 * 3600
WAIT_S = 30.0
KEY_PREFIX = "fhirplug:eps-message:"
CAPABILITY = {
    "name": "process-message",
    "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
}
# response message ids are derived from the message key; so is the delivery id of its async answer
_DELIVERY_NAMESPACE = uuid.UUID("a3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d")


@dataclass(frozen=True)
class _Async:
    partner: str  # the sender's ODS code: its entry in the partner directory
    path: str  # under the partner's base URL, with async=true


class EpsMessaging(UsesRedis):
    def __init__(
        self, redis: Redis | None = None, trust_anchors: list | None = None, source: str | None = None
    ):
        """Values given here (unit tests) win over the app's (``fhirplug_configure``)."""
        self._redis = redis
        self._trust_given = trust_anchors is not None
        if trust_anchors is not None:
            order.configure(trust_anchors)
        self.source = source or ""

    @hookimpl
    def fhirplug_configure(self, settings: Settings, redis: Redis) -> None:
        self.use_app_redis(redis)
        self.source = self.source or settings.public_base_url
        if self._trust_given:
            return
        if not settings.eps_trust_dir:
            log.warning(
                f"{EPS_TRUST_DIR_KEY} is not set: $process-message refuses every prescription-order "
                "(503) until trust anchors for prescribers' certificates are configured"
            )
            order.configure(None)
            return
        try:
            order.configure(load_trust_anchors(settings.eps_trust_dir))
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{EPS_TRUST_DIR_KEY}={settings.eps_trust_dir!r}: {exc}") from exc

    # ------------------------------------------------------------------ the request

    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.kind != "operation" or i.operation != OPERATION or i.resource_type is not None:
            return None
        require_post(ctx, OPERATION)
        if ctx.client.role not in CALLERS or not ctx.client.ods or not ctx.client.id:
            raise FhirError(
                403,
                f"{OPERATION} is for EPS prescribing and dispensing systems, not the {ctx.client.role} role",
                code="forbidden",
            )
        sender = Sender(ctx.client.id, ctx.client.role, ctx.client.ods)
        body = json_body(ctx, "Bundle", f"{OPERATION} needs the message Bundle as its body")
        request = messaging.read(body)
        handler = HANDLERS.get(request.event)
        if handler is None:
            raise FhirError(
                400,
                f"Unsupported event '{request.event}'",
                ["MessageHeader.eventCoding.code"],
                code="not-supported",
            )
        if sender.role not in SENDER_ROLES.get(request.event, frozenset()):
            raise FhirError(
                403,
                f"A {sender.role} may not send {request.event} messages",
                ["MessageHeader.eventCoding.code"],
                code="forbidden",
            )
        deferred = self._async(ctx, request, sender)
        key = records.message_key(sender.ods, request.message_id)
        response = self._once(
            ctx,
            request,
            sender,
            key,
            lambda: self._process(ctx, request, sender, key, deferred),
        )
        return _answer(ctx, response)

    def _async(self, ctx: RequestContext, request: messaging.Request, sender: Sender) -> _Async | None:
        query = ctx.request.query
        unknown = sorted({k for k, _ in query} - set(PARAMETERS))
        if unknown:
            raise FhirError(400, f"{OPERATION} takes no parameter {unknown[0]!r}", [unknown[0]])
        mode = ctx.request.param("async")
        response_url = ctx.request.param("response-url")
        if mode not in (None, "true", "false"):
            raise FhirError(400, "async must be true or false", ["async"])
        if mode != "true":
            if response_url is not None:
                raise FhirError(
                    400, "response-url is for asynchronous messaging (async=true)", ["response-url"]
                )
            return None
        target, expression = messaging.response_target(request, response_url)
        try:
            partner = PartnerDirectory(self.redis).get(sender.ods)
        except RedisError as exc:
            raise FhirError.unavailable("Cannot read the partner directory now") from exc
        if partner is None:
            raise FhirError(
                400,
                f"Asynchronous responses go only to registered endpoints, and {sender.ods} has none "
                "(fhirplug partners add)",
                [expression],
            )
        return _Async(partner.ods, messaging.path_under(target, partner.base_url, expression))

    # ------------------------------------------------------------------ exactly once

    def _once(self, ctx, request: messaging.Request, sender: Sender, key: str, process) -> dict:
        """The answer {status, body, form} to this message: the first copy's if there was one."""
        digest = messaging.digest(request.bundle)
        redis_key = KEY_PREFIX + key
        try:
            claimed = self.redis.set(
                redis_key, json.dumps({"state": "pending", "digest": digest}), nx=True, ex=PENDING_TTL_S
            )
        except RedisError as exc:
            raise FhirError.unavailable(
                "$process-message cannot check for resends now; retry shortly"
            ) from exc
        if not claimed:

            def same_content(record: dict) -> None:
                if record.get("digest") != digest:
                    raise _other_content()

            record = first_result(self.redis, redis_key, "message", WAIT_S, same_content)
            log.info("resend answered with the first result", extra={"fields": {"event": "eps_resend"}})
            return record
        try:
            answer = process()
        except BaseException:
            self._release(redis_key)
            raise
        answer["digest"] = digest
        if 200 <= answer["status"] < 300:
            self._remember(redis_key, answer)
        else:
            self._release(redis_key)  # nothing was stored: a resend is judged afresh
        return answer

    def _remember(self, redis_key: str, answer: dict) -> None:
        record = {**answer, "state": "done"}
        try:
            self.redis.set(redis_key, simplejson.dumps(record, use_decimal=True), ex=RESULT_TTL_S)
        except RedisError:
            log.exception("could not record a message's answer; a resend will be answered from the store")

    def _release(self, redis_key: str) -> None:
        try:
            self.redis.delete(redis_key)
        except RedisError:
            log.exception("could not release a message's claim; it expires by itself")

    # ------------------------------------------------------------------ processing

    def _process(
        self, ctx, request: messaging.Request, sender: Sender, key: str, deferred: _Async | None
    ) -> dict:
        now = datetime.now(UTC)
        handler = HANDLERS[request.event]
        custody = (
            _Custody(ctx.store, self._outbox_entry(ctx, request, key, now, deferred)) if deferred else None
        )
        try:
            result = handler(request.bundle, sender, custody or ctx.store, now)
        except FhirError as exc:
            if exc.status >= 500:
                raise
            result = messaging.fatal(exc)
        response = messaging.response_message(request, result, key=key, now=now, source=self.source)
        if deferred is None or result.status >= 300:
            return {"status": result.status, "body": response}
        if result.replayed:
            # processed before; its response's delivery was recorded with it then
            return {"status": 202, "body": _accepted(request), "async": True}
        assert custody is not None
        delivery = custody.delivery
        if not custody.state.written or delivery.body != response:
            # the handler stored nothing through a transaction, or said more than "ok":
            # the record carries the response as it is now (written under its fixed id)
            delivery = replace(delivery, body=response)
            basic = outbox.record(delivery, custody.state.subject or "")
            if not custody.state.subject:
                basic.pop("subject")
            try:
                ctx.store.put(basic)
            except FhirError:
                if not custody.state.written:
                    raise  # no record of the promise to answer: the sender must resend
                # the record the transaction carried stands (the response without its outcome)
                log.exception("could not update an async response's outbox record")
        try:
            enqueue(delivery, self.redis)
        except Exception:  # the outbox sweep queues it; the message is in our custody
            log.exception("could not queue an async response; the outbox sweep will")
        return {"status": 202, "body": _accepted(request), "async": True}

    def _outbox_entry(self, ctx, request, key: str, now: datetime, deferred: _Async) -> Delivery:
        return Delivery(
            partner=deferred.partner,
            method="POST",
            path=deferred.path,
            body=messaging.response_message(request, EventResult(), key=key, now=now, source=self.source),
            request_id=ctx.request_id,
            kind=DeliveryKind.EPS_RESPONSE,
            id=uuid.uuid5(_DELIVERY_NAMESPACE, key).hex,
        )

    # ------------------------------------------------------------------ discovery

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        """List the operation in the CapabilityStatement the store answers for ``/metadata``."""
        if ctx.interaction.kind == "capabilities":
            advertise(response, CAPABILITY)


@dataclass
class _CustodyState:
    written: bool = False
    subject: str | None = None


@dataclass
class _Custody:
    """The store as a handler sees it in asynchronous mode: its first successful transaction also
    carries the outbox record of the response's delivery, so the message's effect and the promise
    to answer it are stored together or not at all."""

    inner: Any
    delivery: Delivery
    state: _CustodyState = field(default_factory=_CustodyState)

    def as_caller(self, role: str, ods: str | None) -> _Custody:
        return _Custody(self.inner.as_caller(role, ods), self.delivery, self.state)

    def transaction(self, bundle: dict) -> tuple[int, dict | None]:
        if self.state.written:
            return self.inner.transaction(bundle)
        task = next(
            (
                e.get("fullUrl")
                for e in bundle.get("entry") or []
                if (e.get("resource") or {}).get("resourceType") == "Task"
            ),
            None,
        )
        basic = outbox.record(self.delivery, task or "")
        if task is None:
            basic.pop("subject")
        labelled = records.labelled(basic, records.tenant_labels(*_tenants(bundle)))
        entry = {"resource": labelled, "request": {"method": "PUT", "url": f"Basic/{self.delivery.id}"}}
        status, answer = self.inner.transaction({**bundle, "entry": [*(bundle.get("entry") or []), entry]})
        if status < 300:
            self.state.written = True
            self.state.subject = _location_of(answer, "Task")
        return status, answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _tenants(bundle: dict) -> list[str]:
    """The tenant labels the transaction's resources carry (the outbox record gets the same)."""
    codes: set[str] = set()
    for entry in bundle.get("entry") or []:
        for label in ((entry.get("resource") or {}).get("meta") or {}).get("security") or []:
            if label.get("system") == TENANT_SYSTEM and isinstance(label.get("code"), str):
                codes.add(label["code"])
    return sorted(codes)


def _location_of(answer: dict | None, resource_type: str) -> str | None:
    for entry in (answer or {}).get("entry") or []:
        location = (entry.get("response") or {}).get("location") or ""
        if location.startswith(resource_type + "/"):
            return "/".join(location.split("/")[:2])
    return None


def _accepted(request: messaging.Request) -> dict:
    return messaging.informational(
        f"Message {request.message_id} accepted; the response message follows asynchronously"
    )


def _other_content() -> FhirError:
    return FhirError(
        409,
        "This message id was already used for a message with other content",
        ["Bundle.id"],
        code="conflict",
    )


def _answer(ctx: RequestContext, answer: dict) -> ProxyResponse:
    """The recorded answer as it leaves: the response message, or (``Prefer:
    return=OperationOutcome``, EPS's way) only its OperationOutcome."""
    body = answer["body"]
    prefer = (ctx.request.header("prefer") or "").replace(" ", "").lower()
    if "return=operationoutcome" in prefer and body.get("resourceType") == "Bundle":
        body = messaging.outcome_of(body)
    return ProxyResponse.from_resource(answer["status"], body)


eps_messaging = EpsMessaging()
