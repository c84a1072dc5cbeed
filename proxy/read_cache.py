"""A read cache in front of the store that can never serve an answer older than an acknowledged write.

Why: HAPI answers a read by id in under a millisecond of CPU; relaying it through Python costs
more than that again. Pharmacy systems poll the same Tasks and prescriptions over and over, so
answering repeated reads from Redis is where the proxy can be as fast as the store.

How it stays right (every proxy process and every worker share one Redis):

- **Write generations, by resource type.** Every write to the store, by any proxy, worker or
  CLI, is fenced: before it is sent, a marker "write in flight" is added and the generations of
  what it touches are bumped; after the store has answered, the marker is removed and they are
  bumped again. A write whose types are known (a write to ``Task/1``, a transaction whose every
  entry names its type) touches those types; any other write (an operation, a cascading delete,
  a body that cannot be read) touches *everything*. A read by id or a plain search of one type
  (no ``_include``, ``_revinclude``, ``_has``, chain or compartment) depends on its type and on the
  "everything" writes; any other read depends on every write. A cached answer is served only
  while the generations it depends on are the ones it was filled under. So a Task PATCH no
  longer empties the cached Patients and Organizations, and what a cache cannot list (an
  ``_include`` across types, a ``$``-operation's effects) is still treated as touching all.
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
import re
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from urllib.parse import urlencode

from redis import Redis
from redis.exceptions import RedisError

from proxy.errors import FhirError
from proxy.request_metrics import cache_lookup
from proxy.store_caller import CALLER_KEY

log = logging.getLogger("fhirplug.read_cache")

GENERATION = "fhirplug:readcache:generation"  # bumped by every write: what reads of "all" watch
IN_FLIGHT = "fhirplug:readcache:writes"  # sorted set: write id -> when its marker expires
UNTYPED = "*"  # the "type" of writes whose types are not known: every typed read watches it too
TYPED_GENERATION = "fhirplug:readcache:generation:"  # + type (or UNTYPED)
TYPED_IN_FLIGHT = "fhirplug:readcache:writes:"  # + type (or UNTYPED)
ENTRY = "fhirplug:readcache:entry:"
NOT_WRITES = ("_search", "$validate", "$fhirplug-convert")  # POSTs that store nothing: no fence
NEVER_CACHED = ("Subscription",)  # HAPI changes these itself
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
# search parameters whose answer involves other types than the one searched
_ACROSS_TYPES = ("_include", "_revinclude", "_has", "_contained", "_filter", "_list", "_type", "_query")

# KEYS: (generation, in-flight set) pairs; ARGV: write id, seconds the marker lives
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
for i = 1, #KEYS, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now)
  redis.call('ZADD', KEYS[i + 1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('INCR', KEYS[i])
end
return 1
"""
# KEYS: (generation, in-flight set) pairs; ARGV: write id
_END = """
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i + 1], ARGV[1])
  redis.call('INCR', KEYS[i])
end
return 1
"""
# KEYS: entry, then (generation, in-flight set) pairs; ARGV: value, ttl, then the generation of
# each pair seen before asking the store
_FILL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local seen = {}
for i = 2, #KEYS, 2 do
  local g = redis.call('GET', KEYS[i]) or '0'
  if g ~= ARGV[2 + i / 2] then return 0 end
  if redis.call('ZCOUNT', KEYS[i + 1], '(' .. now, '+inf') > 0 then return 0 end
  seen[#seen + 1] = g
end
redis.call('SET', KEYS[1], table.concat(seen, ',') .. '|' .. ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


def _fence_keys(types: Iterable[str] | None) -> list[str]:
    """The (generation, in-flight) key pairs a write touching ``types`` (None: unknown) bumps."""
    keys = [GENERATION, IN_FLIGHT]
    for t in sorted(types) if types is not None else [UNTYPED]:
        keys += [TYPED_GENERATION + t, TYPED_IN_FLIGHT + t]
    return keys


def _watched_keys(read_type: str | None) -> list[str]:
    """The (generation, in-flight) key pairs a read of ``read_type`` (None: of anything) watches."""
    if read_type is None:
        return [GENERATION, IN_FLIGHT]
    return [
        TYPED_GENERATION + UNTYPED,
        TYPED_IN_FLIGHT + UNTYPED,
        TYPED_GENERATION + read_type,
        TYPED_IN_FLIGHT + read_type,
    ]


def _type_of(url: str) -> str | None:
    """``Task`` for ``Task/1``, ``Task?identifier=x`` or ``Task``; None for a ``$``-operation, a
    cascading delete (``_cascade``: it deletes what refers to it, of any type) or the base."""
    path, _, query = url.partition("?")
    if "$" in path or "_cascade" in query:
        return None
    head = path.strip("/").split("/", 1)[0]
    return head if _TYPE.fullmatch(head) else None


def written_types(method: str, path: str, query: list[tuple[str, str]], body) -> frozenset[str] | None:
    """The resource types a write can change, or None when that cannot be known beforehand
    (an operation, a cascading delete, a bundle that does not say): then it touches everything.
    ``body``: the bytes sent, or the parsed JSON (a bundle to the base is read for its entries)."""
    if any(k == "_cascade" for k, _ in query):
        return None
    if path.strip("/"):
        t = _type_of(path)
        return frozenset({t}) if t is not None else None
    bundle = body
    if isinstance(body, bytes | bytearray):
        try:
            bundle = json.loads(body)
        except ValueError:
            return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return None
    types: set[str] = set()
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            return None
        url = request["url"]
        if str(request.get("method", "")).upper() in ("GET", "HEAD"):
            continue  # a read in a batch changes nothing
        t = _type_of(url)
        if t is None:
            return None
        types.add(t)
        resource = entry.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            types.add(resource["resourceType"])
    return frozenset(types)


def read_type(path: str, query: list[tuple[str, str]]) -> str | None:
    """The one type a read's answer depends on, or None when it may depend on any."""
    parts = path.strip("/").split("/")
    if not _TYPE.fullmatch(parts[0]) or len(parts) > 4:
        return None
    if len(parts) == 3 and parts[2] != "_history":  # a compartment: Patient/1/MedicationRequest
        return None
    if len(parts) in (2, 4) and parts[1] == "_history":  # Task/_history/x is no read we know
        return None
    for name, _ in query:
        if name.startswith(_ACROSS_TYPES) or "." in name:  # chains: subject.name, subject:Patient.name
            return None
    return parts[0]


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
    def write(self, types: Iterable[str] | None = None):
        """Fence a write that changes resources of ``types`` only; None: it may change anything."""
        write_id = uuid.uuid4().hex
        keys = _fence_keys(types)
        try:
            self._begin(keys=keys, args=[write_id, self.marker_ttl_s])
        except RedisError as exc:
            log.warning("cannot fence a write (Redis unreachable): %s", exc)
            raise FhirError.unavailable(
                "The proxy cannot reach Redis to record this write; retry shortly"
            ) from exc
        yield
        # Not reached when the write raised (the store timed out, say): the store may still apply
        # it later, so its marker stays until it expires and nothing is cached meanwhile.
        try:
            self._end(keys=keys, args=[write_id])
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
            with self.fence.write(written_types(method, path, query, body)):
                return self.inner.send(method, path, query, headers, body)
        key = self._key(method, path, query, headers)
        if key is None:
            cache_lookup("bypass")
            return self.inner.send(method, path, query, headers, body)
        watched = _watched_keys(read_type(path, query))
        generation_keys = watched[0::2]
        try:
            *generations, entry = self.redis.mget(*generation_keys, key)
        except RedisError as exc:
            log.warning("read cache unavailable, asking the store: %s", exc)
            cache_lookup("bypass")
            return self.inner.send(method, path, query, headers, body)
        seen = b",".join(g or b"0" for g in generations)
        if entry is not None:
            filled, _, rest = entry.partition(b"|")
            if filled == seen:
                meta, _, data = rest.partition(b"\n")
                cache_lookup("hit")
                return CachedResponse(200, json.loads(meta), data)
        cache_lookup("miss")
        return self._fetch_and_fill(key, watched, seen, method, path, query, headers)

    def _fetch_and_fill(self, key, watched, seen, method, path, query, headers):
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
            self._fill(keys=[key, *watched], args=[value, self.ttl_s, *seen.split(b",")])
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
