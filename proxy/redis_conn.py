"""The one Redis client a plugin needs, made on first use from REDIS_URL (so a plugin imports
without a server), or given in the constructor by a test."""

from __future__ import annotations

import os

from redis import Redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class UsesRedis:
    _redis: Redis | None = None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            url = os.environ.get("REDIS_URL", DEFAULT_URL)
            # short timeouts: a request waiting on an unreachable Redis should fail, not hang
            self._redis = Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        return self._redis
