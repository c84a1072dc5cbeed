"""A plugin's Redis client: the one given to its constructor (unit tests), else the app's one
client, handed over when the app is built (``fhirplug_configure``); a plugin never makes its own."""

from __future__ import annotations

from redis import Redis


class UsesRedis:
    _redis: Redis | None = None  # given to the constructor: wins over the app's
    _app_redis: Redis | None = None

    def use_app_redis(self, redis: Redis) -> None:
        """The app's client, from ``fhirplug_configure``."""
        self._app_redis = redis

    @property
    def redis(self) -> Redis:
        client = self._redis if self._redis is not None else self._app_redis
        if client is None:
            raise RuntimeError(
                f"{type(self).__name__} has no Redis client: pass one to its constructor, or let the "
                "app hand it its own (fhirplug_configure, called by proxy.app.create_app)"
            )
        return client
