"""Fixtures for the console's unit tests: an in-memory Redis with the few more commands the
console uses, and the proxy app with the console mounted (fake store, no servers)."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_redis import FakeRedis


class ConsoleRedis(FakeRedis):
    def hsetnx(self, key, field, value):
        if field in self.hashes.get(key, {}):
            return 0
        return self.hset(key, field, value)

    def getdel(self, key):
        with self._lock:
            held = self.values.pop(key, None)
        if held is None or (held[1] is not None and held[1] <= time.time()):
            return None
        return held[0].encode() if isinstance(held[0], str) else held[0]

    def exists(self, key):
        return 1 if self.get(key) is not None else 0

    def delete(self, *keys):
        return sum(FakeRedis.delete(self, k) for k in keys)

    def expire(self, key, seconds):
        with self._lock:
            if key in self.values:
                self.values[key] = (self.values[key][0], time.time() + seconds)
        return True

    def pipeline(self):
        return _Pipeline(self)


class _Pipeline:
    def __init__(self, redis):
        self.redis, self.calls = redis, []

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a, k))

    def execute(self):
        return [getattr(self.redis, n)(*a, **k) for n, a, k in self.calls]


@pytest.fixture
def redis() -> ConsoleRedis:
    return ConsoleRedis()
