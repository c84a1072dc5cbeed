"""A read cache in front of the store that can never serve an answer older than an acknowledged write.

Why: HAPI answers a read by id in under a millisecond of CPU; relaying it through Python costs
more than that again. Pharmacy systems poll the same Tasks and prescriptions over and over, so
answering repeated reads from Redis is where the proxy can be as fast as the store.

How it stays right (every proxy process and every worker share one Redis):

- **One write generation.** Every write to the store, by any proxy, worker or CLI, is fenced:
  before it is sent, a marker "write in flight" is added and the generation is bumped; after
  the store has answered, the marker is removed and the generation bumped again. A cached
  answer is served only while the generation is the one it was filled under, so any write
  anywhere empties the whole cache at once. Coarse on purpose: a transaction, a conditional
  write or a cascading delete touches resources we cannot list beforehand, and a cache that
  must know which is a cache that will one day be wrong.
- **No fills while a write is in flight, and none across one.** A miss notes the generation,
  asks the store, and stores the answer only if (atomically, in one Lua script) the
  generation is unchanged and no write is in flight. A write that crashed mid-way leaves its
  marker until it expires (the store's read timeout plus a margin), so nothing is cached until
  the store's state is final.
- **Fail safe.** Redis unreachable on a read: the store answers, nothing is cached. Redis
  unreachable when a write must be fenced: the write is refused with 503, because another
  proxy could otherwise go on serving what the write changed.

Only plain reads and searches (GET, no operation, no conditional headers, 200 answers up to
``max_bytes``) are cached; a caller's ``Cache-Control: no-cache`` goes to the store. The store
must not be written behind fhirplug's back: anything that writes to it directly (the profile
loader, the outbox clean-up) uses :class:`WriteFence` too. Subscription resources are never
cached, because HAPI updates their status itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from contextlib import contextmanager
from urllib.parse import urlencode

from redis import Redis
from redis.exceptions import RedisError

from proxy.errors import FhirError
from proxy.store_caller import CALLER_KEY

log = logging.getLogger("fhirplug.read_cache")

GENERATION = "fhirplug:readcache:generation"
IN_FLIGHT = "fhirplug:readcache:writes"  # sorted set: write id -> when its marker expires
ENTRY = "fhirplug:readcache:entry:"
NOT_WRITES = ("_search", "$validate", "$fhirplug-convert")  # POSTs that store nothing: no fence
NEVER_CACHED = ("Subscription",)  # HAPI changes these itself

# KEYS: generation, in-flight set; ARGV: write id, seconds the marker lives
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('INCR', KEYS[1])
"""
# KEYS: generation, in-flight set; ARGV: write id
_END = """
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[1])
"""
# KEYS: generation, in-flight set, entry; ARGV: generation seen before asking the store, value, ttl
_FILL = """
local g = redis.call('GET', KEYS[1]) or '0'
if g ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
if redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') > 0 then return 0 end
redis.call('SET', KEYS[3], g .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def is_write(method: str, path: str) -> bool:
    """Could this request change what the store holds? (Reads and read-only POSTs cannot.)"""
    if method in ("GET", "HEAD"):
        return False
    return not (method == "POST" and path.rsplit("/", 1)[-1] in NOT_WRITES)


class WriteFence:
    """Brackets every write to the store (see the module's docstring)."""

    def __init__(self, redis: Redis, marker_ttl_s: float):
        self.redis = redis
        self.marker_ttl_s = float(marker_ttl_s)
        self._begin = redis.register_script(_BEGIN)
        self._end = redis.register_script(_END)

    @contextmanager
    def write(self):
        write_id = uuid.uuid4().hex
        try:
            self._begin(keys=[GENERATION, IN_FLIGHT], args=[write_id, self.marker_ttl_s])
        except RedisError as exc:
            log.warning("cannot fence a write (Redis unreachable): %s", exc)
            raise FhirError.unavailable(
                "The proxy cannot reach Redis to record this write; retry shortly"
            ) from exc
        yield
        # Not reached when the write raised (the store timed out, say): the store may still apply
        # it later, so its marker stays until it expires and nothing is cached meanwhile.
        try:
            self._end(keys=[GENERATION, IN_FLIGHT], args=[write_id])
        except RedisError as exc:
            log.warning("could not close a write fence (it expires by itself): %s", exc)


class _Headers:
    """The few header look-ups the pass-through makes, case-insensitively."""

    def __init__(self, items: dict[str, str]):
        self._items = {k.lower(): v for k, v in items.items()}

    def get(self, name: str, default=None):
        return self._items.get(name.lower(), default)


class CachedResponse:
    """Looks like the unread upstream response the pass-through expects, from memory."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, rest=None):
        self.status = status
        self.headers = _Headers(headers)
        self._buf = io.BytesIO(body)
        self._rest = rest  # the upstream response, when only the start of a large body is here

    def read(self, amt: int | None = None) -> bytes:
        data = self._buf.read() if amt is None else self._buf.read(amt)
        if self._rest is not None and (amt is None or len(data) < amt):
            data += self._rest.read() if amt is None else self._rest.read(amt - len(data))
        return data

    def release_conn(self) -> None:
        if self._rest is not None:
            self._rest.release_conn()

    def close(self) -> None:
        if self._rest is not None:
            self._rest.close()


class CachingStore:
    """A StoreClient with the read cache and write fence around it; same interface."""

    def __init__(self, inner, redis: Redis, ttl_s: int, max_bytes: int, marker_ttl_s: float):
        self.inner = inner
        self.base_url = inner.base_url
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.fence = WriteFence(redis, marker_ttl_s)
        self._fill = redis.register_script(_FILL)

    def ping(self) -> bool:
        return self.inner.ping()

    def send(self, method, path, query, headers, body):
        if is_write(method, path):
            with self.fence.write():
                return self.inner.send(method, path, query, headers, body)
        key = self._key(method, path, query, headers)
        if key is None:
            return self.inner.send(method, path, query, headers, body)
        try:
            generation, entry = self.redis.mget(GENERATION, key)
        except RedisError as exc:
            log.warning("read cache unavailable, asking the store: %s", exc)
            return self.inner.send(method, path, query, headers, body)
        generation = generation or b"0"
        if entry is not None:
            seen, _, rest = entry.partition(b"|")
            if seen == generation:
                meta, _, data = rest.partition(b"\n")
                return CachedResponse(200, json.loads(meta), data)
        return self._fetch_and_fill(key, generation, method, path, query, headers)

    def _fetch_and_fill(self, key, generation, method, path, query, headers):
        upstream = self.inner.send(method, path, query, headers, None)
        if upstream.status != 200:
            return upstream
        data = upstream.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:  # too large to keep: relay it, start and rest
            return CachedResponse(upstream.status, dict(upstream.headers.items()), data, rest=upstream)
        upstream.release_conn()
        kept = {k: v for k, v in upstream.headers.items() if k.lower() != "transfer-encoding"}
        value = json.dumps(kept, separators=(",", ":")).encode() + b"\n" + data
        try:
            self._fill(keys=[GENERATION, IN_FLIGHT, key], args=[generation, value, self.ttl_s])
        except RedisError as exc:
            log.warning("could not fill the read cache: %s", exc)
        return CachedResponse(200, kept, data)

    @staticmethod
    def _key(method, path, query, headers) -> str | None:
        """The entry for a cacheable request, or None when it must go to the store."""
        if method != "GET" or "$" in path or path.split("/", 1)[0] in NEVER_CACHED:
            return None
        asked = {k.lower(): v for k, v in headers.items()}
        if set(asked) - {"accept", "x-request-id", CALLER_KEY}:
            return None  # conditional reads, Cache-Control, preferences: the store decides
        # the store answers each caller for itself (its tenancy line): one entry per caller
        text = f"{path}?{urlencode(query)}|{asked.get('accept', '')}|{asked.get(CALLER_KEY, '')}"
        return ENTRY + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
