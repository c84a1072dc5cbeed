"""An in-memory stand-in for the few Redis commands the auth code and plugins use (unit tests only)."""

from __future__ import annotations

import threading
import time


class FakeRedis:
    def __init__(self):
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.values: dict[str, tuple[bytes, float | None]] = {}
        self._lock = threading.Lock()

    def hget(self, key, field):
        return self.hashes.get(key, {}).get(field)

    def hset(self, key, field, value):
        self.hashes.setdefault(key, {})[field] = value.encode() if isinstance(value, str) else value
        return 1

    def hvals(self, key):
        return list(self.hashes.get(key, {}).values())

    def hdel(self, key, field):
        return 1 if self.hashes.get(key, {}).pop(field, None) is not None else 0

    def set(self, key, value, nx=False, ex=None):
        with self._lock:
            held = self.values.get(key)
            if held and (held[1] is None or held[1] > time.time()) and nx:
                return None
            self.values[key] = (value, time.time() + ex if ex else None)
            return True

    def get(self, key):
        with self._lock:
            held = self.values.get(key)
            if held is None or (held[1] is not None and held[1] <= time.time()):
                return None
            return held[0].encode() if isinstance(held[0], str) else held[0]

    def delete(self, key):
        with self._lock:
            return 1 if self.values.pop(key, None) is not None else 0

    def incr(self, key):
        with self._lock:
            value = int(self.values.get(key, (b"0", None))[0]) + 1
            self.values[key] = (str(value).encode(), None)
            return value

    def decr(self, key):
        with self._lock:
            value = int(self.values.get(key, (b"0", None))[0]) - 1
            self.values[key] = (str(value).encode(), None)
            return value

    def expire(self, key, seconds):
        return True
