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
from proxy.auth.registry import DEFAULT_EPS_SIGNING_ALGORITHM, ClientRegistry
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.operations import advertise, json_body, require_post
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
        require_post(ctx, OPERATION)
        if ctx.client.role not in CALLERS:
            raise FhirError(
                403,
                f"{OPERATION} is for prescribing systems (role prescriber), not the {ctx.client.role} role",
                code="forbidden",
            )
        prepared = prepare(
            json_body(ctx, "Bundle", f"{OPERATION} needs the prescription-order message Bundle as its body"),
            self._algorithm(ctx.client.id),
        )
        return ProxyResponse.from_resource(200, prepared.to_parameters())

    @hookimpl
    def fhirplug_response(self, ctx: RequestContext, response: ProxyResponse) -> None:
        """List the operation in the CapabilityStatement the store answers for ``/metadata``."""
        if ctx.interaction.kind == "capabilities":
            advertise(response, CAPABILITY)

    def _algorithm(self, client_id: str | None) -> HashAlgorithm:
        """The client's registered algorithm, read afresh (a re-registration counts at once)."""
        try:
            record = ClientRegistry(self.redis).get(client_id) if client_id else None
        except RedisError as exc:
            raise FhirError.unavailable("Cannot read the client's registration now") from exc
        return HashAlgorithm(record.eps_signing_algorithm if record else DEFAULT_EPS_SIGNING_ALGORITHM)


eps_prepare = EpsPrepare()
