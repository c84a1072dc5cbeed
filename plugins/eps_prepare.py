"""EPS ``POST [base]/$prepare``, served by the proxy itself: the digest a prescriber signs.

The body is an unsigned prescription-order message Bundle (JSON); the answer is the
``Parameters`` {digest, timestamp, algorithm} that ``eps.prepare`` computes, in the signing
algorithm registered for the calling client (RS256 unless ``fhirplug clients add --eps-algorithm
RS1``). Nothing is read from or written to the store. The rules are ``eps.prepare``'s; this module
only wires them in: who may call (prescribers and administrators), the body, the client's
algorithm, and the operation's line in the CapabilityStatement.

It answers from ``fhirplug_request``, so it must be listed before ``tenancy`` in FHIRPLUG_PLUGINS
(the default list does): tenancy closes every operation but ``$validate`` to roles other than
admin, and would otherwise refuse prescribers before this plugin saw the request.
"""

from __future__ import annotations

from redis import Redis
from redis.exceptions import RedisError

from eps.prepare import HashAlgorithm, prepare
from proxy import bodies, json_shapes
from proxy.auth.registry import DEFAULT_EPS_SIGNING_ALGORITHM, ClientRegistry
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.redis_conn import UsesRedis
from proxy.response import ProxyResponse

OPERATION = "$prepare"
CALLERS = frozenset({"prescriber", "admin"})
# how EPS names the operation in its CapabilityStatement
CAPABILITY = {
    "name": "prepare",
    "definition": "https://fhir.nhs.uk/OperationDefinition/MessageHeader-prepare-message",
}


class EpsPrepare(UsesRedis):
    def __init__(self, redis: Redis | None = None):
        """``redis`` given here (unit tests) wins over the app's (``fhirplug_configure``)."""
        self._redis = redis

    @hookimpl
    def fhirplug_configure(self, redis: Redis) -> None:
        self.use_app_redis(redis)

    @hookimpl
    def fhirplug_request(self, ctx: RequestContext) -> ProxyResponse | None:
        i = ctx.interaction
        if i.kind != "operation" or i.operation != OPERATION or i.resource_type is not None:
            return None
        if ctx.request.method != "POST":
            raise FhirError(
                405, f"{OPERATION} takes POST, not {ctx.request.method}", headers={"Allow": "POST"}
            )
        if ctx.client.role not in CALLERS:
            raise FhirError(
                403,
                f"{OPERATION} is for prescribing systems (role prescriber), not the {ctx.client.role} role",
                code="forbidden",
            )
        prepared = prepare(_bundle(ctx), self._algorithm(ctx.client.id))
        return ProxyResponse.from_resource(200, prepared.to_parameters())

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        """List the operation in the CapabilityStatement the store answers for ``/metadata``."""
        if ctx.interaction.kind != "capabilities" or response.status != 200 or not response.is_json:
            return
        cs = response.resource
        if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
            return
        rest = cs.get("rest")
        if not isinstance(rest, list) or not rest or not isinstance(rest[0], dict):
            return
        operations = rest[0].setdefault("operation", [])
        if isinstance(operations, list) and CAPABILITY not in operations:
            operations.append(dict(CAPABILITY))
            response.resource = cs

    def _algorithm(self, client_id: str | None) -> HashAlgorithm:
        """The client's registered algorithm, read afresh (a re-registration counts at once)."""
        try:
            record = ClientRegistry(self.redis).get(client_id) if client_id else None
        except RedisError as exc:
            raise FhirError.unavailable("Cannot read the client's registration now") from exc
        return HashAlgorithm(record.eps_signing_algorithm if record else DEFAULT_EPS_SIGNING_ALGORITHM)


def _bundle(ctx: RequestContext) -> object:
    """The posted message, parsed and shape-checked as every JSON body the proxy reads.

    FHIR XML is refused (415): the proxy renders XML but has no XML parser."""
    raw = ctx.request_body()
    has_body = bool(raw.strip())
    media_type = bodies.check_body_media_type(ctx.interaction, ctx.request.content_type, has_body)
    if not has_body:
        raise FhirError(
            400, f"{OPERATION} needs the prescription-order message Bundle as its body", ["Bundle"]
        )
    try:
        body = bodies.parse_json(raw)
    except FhirError as exc:
        exc.expression = exc.expression or ["Bundle"]  # the whole body: the Bundle it should be
        raise
    json_shapes.check(body, media_type)
    return body


eps_prepare = EpsPrepare()
