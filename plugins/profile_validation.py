"""Hub-and-spoke bundles are validated against their England profile before they are stored.

Errors (severity error or fatal) refuse the write with 400 and the validator's issues, each
with its FHIRPath location; warnings and information never block and are logged. The same
content validated against the same conformance content is answered from a cache in Redis: the
key is a hash of the bundle, the profile, and a generation counter that any change to
conformance resources (a profile upload, a package install, ``fhirplug profiles load``) bumps,
so an upload is seen by the very next validation in every proxy process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging

import simplejson
from redis import Redis
from redis.exceptions import RedisError

from hubspoke.messages import classify
from proxy.conformance import CONFORMANCE_TYPES, GENERATION_KEY
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.redis_conn import UsesRedis

log = logging.getLogger("fhirplug.validation")
ENGLAND = "https://fhir.nhs.uk/England/StructureDefinition/"
PROFILES = {
    "spoke-to-hub": ENGLAND + "England-Bundle-PharmacySpokeToHub",
    "hub-to-spoke": ENGLAND + "England-Bundle-PharmacyHubToSpoke",
}
CACHE_TTL_S = 24 * 3600
BLOCKING = ("error", "fatal")


def content_key(resource: dict, profile: str, generation: int) -> str:
    canonical = simplejson.dumps(resource, sort_keys=True, separators=(",", ":"), use_decimal=True)
    digest = hashlib.sha256(f"{profile}\n{canonical}".encode()).hexdigest()
    return f"fhirplug:validation:{generation}:{digest}"


def blocking_issues(outcome: dict) -> list[tuple[str, list[str]]]:
    return [
        (
            i.get("diagnostics") or i.get("code", "invalid"),
            list(i.get("expression") or i.get("location") or []),
        )
        for i in outcome.get("issue") or []
        if i.get("severity") in BLOCKING
    ]


class ProfileValidation(UsesRedis):
    def __init__(self, redis: Redis | None = None):
        """``redis`` given here (unit tests) wins over the app's (``fhirplug_configure``)."""
        self._redis = redis

    @hookimpl
    def fhirplug_configure(self, redis: Redis) -> None:
        self.use_app_redis(redis)

    def validate(self, store, resource: dict, profile: str) -> tuple[dict, bool]:
        """The OperationOutcome and whether it came from the cache."""
        try:
            generation = int(self.redis.get(GENERATION_KEY) or 0)
            key = content_key(resource, profile, generation)
            cached = self.redis.get(key)
        except RedisError:
            log.warning("validation cache unreachable; validating without it")
            return store.validate(resource, profile), False
        if cached:
            return json.loads(cached), True
        outcome = store.validate(resource, profile)
        with contextlib.suppress(RedisError):  # a cache that cannot be written is only slower
            self.redis.set(key, simplejson.dumps(outcome), ex=CACHE_TTL_S)
        return outcome, False

    @hookimpl
    def fhirplug_before_bundle(self, ctx, bundle):
        # message_checks, when listed before us, has classified it already
        kind = ctx.message.kind if ctx.message else classify(bundle)
        if kind is None:
            return None
        profile = PROFILES[kind]
        outcome, cached = self.validate(ctx.store, bundle, profile)
        problems = blocking_issues(outcome)
        advisories = [i for i in outcome.get("issue") or [] if i.get("severity") not in BLOCKING]
        log.info(
            "bundle validated",
            extra={
                "fields": {
                    "event": "bundle_validated",
                    "request_id": ctx.request_id,
                    "profile": profile,
                    "errors": len(problems),
                    "warnings": sum(i.get("severity") == "warning" for i in advisories),
                    "cached": cached,
                    "advisories": [i.get("diagnostics") for i in advisories][:20],
                }
            },
        )
        if problems:
            raise FhirError.many(400, problems, code="invalid")
        return None

    @hookimpl
    def fhirplug_after_storage(self, ctx, entry, outcome):
        if outcome.ok and entry.resource_type in CONFORMANCE_TYPES:
            try:
                self.redis.incr(GENERATION_KEY)
            except RedisError:
                log.exception("could not mark cached validations stale after a conformance change")


profile_validation = ProfileValidation()
