"""Remembers client-assertion ``jti`` values so an assertion is accepted once, even when two
copies arrive at the same moment (Redis SET NX is atomic)."""

from __future__ import annotations


class ReplayCache:
    def __init__(self, redis):
        self.redis = redis

    def first_use(self, client_id: str, jti: str, ttl_s: int) -> bool:
        """True the first time this client presents ``jti``; remembered for ``ttl_s`` seconds,
        which must cover the rest of the assertion's validity."""
        return bool(self.redis.set(f"fhirplug:jti:{client_id}:{jti}", b"1", nx=True, ex=max(ttl_s, 1)))
