"""The Redis records of subscriptions and their events: what every proxy and worker shares.

- ``fhirplug:subs``: one hash, Subscription id -> its :class:`~subscriptions.resource.Spec`;
  ``fhirplug:subs:gen`` counts its changes, so each process keeps the active subscriptions per
  resource type in memory (:class:`ActiveCache`) and re-reads them only after a change.
- Per subscription (``fhirplug:sub:<id>:``): ``seq`` the last event number given, ``events``
  the events by number, ``acked`` the last number the subscriber acknowledged (a 2xx),
  ``wake`` the delivery job that will send what is not acknowledged yet, ``lease`` the
  delivery under way (one at a time: in order), ``sent`` when anything was last sent (heartbeats).

An event is numbered and recorded in one step (a Lua script: ``INCR`` and ``HSET`` together), so
numbers have no gaps and no number is ever given to two events; the same step says whether a
delivery job must be queued (no job was waiting for that subscription).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from subscriptions.filters import Filter
from subscriptions.resource import Spec
from subscriptions.topics import TOPICS

SPECS = "fhirplug:subs"
GEN = "fhirplug:subs:gen"
PREFIX = "fhirplug:sub:"

# KEYS: seq, events, wake; ARGV: the event (JSON, without its number), the job id that would
# deliver it. Returns {number, 1 if that job must be queued else 0}.
_RECORD = """
local n = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], n, ARGV[1])
local woken = redis.call('SET', KEYS[3], ARGV[2], 'NX')
if woken then return {n, 1} end
return {n, 0}
"""
# KEYS: acked; ARGV: n. Acknowledge n only right after n-1: never skips, never goes back.
_ACK = """
local acked = tonumber(redis.call('GET', KEYS[1]) or '0')
if acked == tonumber(ARGV[1]) - 1 then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def key(sid: str, part: str) -> str:
    return f"{PREFIX}{sid}:{part}"


def _int(value: Any) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    return int(value) if value not in (None, "") else 0


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def save(redis: Redis, spec: Spec) -> None:
    """Record (or replace) a subscription and tell every process's cache."""
    pipe = redis.pipeline()
    pipe.hset(SPECS, spec.id, spec.to_json())
    pipe.incr(GEN)
    pipe.execute()


def get(redis: Redis, sid: str) -> Spec | None:
    raw = redis.hget(SPECS, sid)
    return Spec.from_json(raw) if raw else None


def set_status(redis: Redis, sid: str, status: str, error: str = "") -> Spec | None:
    spec = get(redis, sid)
    if spec is None:
        return None
    spec.status, spec.error = status, error
    save(redis, spec)
    return spec


def remove(redis: Redis, sid: str) -> None:
    """Forget a subscription and its events (a deleted Subscription)."""
    pipe = redis.pipeline()
    pipe.hdel(SPECS, sid)
    pipe.delete(*(key(sid, p) for p in ("seq", "events", "acked", "wake", "lease", "sent", "hb")))
    pipe.incr(GEN)
    pipe.execute()


def all_specs(redis: Redis) -> list[Spec]:
    return [Spec.from_json(v) for v in redis.hvals(SPECS)]


def record(redis: Redis, sid: str, event: dict[str, Any], job_id: str) -> tuple[int, bool]:
    """Number and keep one event; (its number, whether ``job_id`` must now be queued)."""
    n, woken = redis.eval(
        _RECORD, 3, key(sid, "seq"), key(sid, "events"), key(sid, "wake"), json.dumps(event), job_id
    )
    return int(n), bool(woken)


def latest(redis: Redis, sid: str) -> int:
    """The number of the last event recorded (events since the subscription started)."""
    return _int(redis.get(key(sid, "seq")))


def acked(redis: Redis, sid: str) -> int:
    return _int(redis.get(key(sid, "acked")))


def acknowledge(redis: Redis, sid: str, n: int) -> bool:
    return bool(redis.eval(_ACK, 1, key(sid, "acked"), n))


def event(redis: Redis, sid: str, n: int) -> dict[str, Any] | None:
    raw = redis.hget(key(sid, "events"), str(n))
    if not raw:
        return None
    found: dict[str, Any] = json.loads(raw)
    found["number"] = n
    return found


def events(redis: Redis, sid: str, first: int, last: int) -> list[dict[str, Any]]:
    """Events ``first``..``last`` (inclusive) that are kept, in order."""
    if last < first:
        return []
    numbers = list(range(first, last + 1))
    raws = redis.hmget(key(sid, "events"), [str(n) for n in numbers])
    out = []
    for n, raw in zip(numbers, raws, strict=True):
        if raw:
            found = json.loads(raw)
            found["number"] = n
            out.append(found)
    return out


def waker(redis: Redis, sid: str) -> str | None:
    """The id of the delivery job that will send what is pending, if one is on its way."""
    return _text(redis.get(key(sid, "wake")))


def claim_wake(redis: Redis, sid: str, job_id: str) -> bool:
    return bool(redis.set(key(sid, "wake"), job_id, nx=True))


def clear_wake(redis: Redis, sid: str, job_id: str | None = None) -> None:
    """Drop the wake marker (only if it is still ``job_id``'s, when given)."""
    k = key(sid, "wake")
    if job_id is None or _text(redis.get(k)) == job_id:
        redis.delete(k)


def mark_sent(redis: Redis, sid: str, at: float | None = None) -> None:
    redis.set(key(sid, "sent"), repr(at if at is not None else time.time()))


def last_sent(redis: Redis, sid: str) -> float:
    raw = _text(redis.get(key(sid, "sent")))
    return float(raw) if raw else 0.0


class ActiveCache:
    """The active subscriptions per resource type, kept in this process and re-read from Redis
    only when the generation has moved (a Subscription was written anywhere): one ``GET`` per
    write of a topic's type, whatever the number of subscriptions."""

    def __init__(self) -> None:
        self._gen: int | None = None
        self._by_type: dict[str, list[tuple[Spec, list[Filter]]]] = {}

    def for_type(self, redis: Redis, resource_type: str) -> list[tuple[Spec, list[Filter]]]:
        """The active subscriptions on topics about ``resource_type``, with their filters parsed."""
        gen = _int(redis.get(GEN))
        if gen != self._gen:
            by_type: dict[str, list[tuple[Spec, list[Filter]]]] = {}
            for spec in all_specs(redis):
                if spec.status == "active" and spec.topic in TOPICS:
                    by_type.setdefault(spec.resource_type, []).append((spec, spec.parsed_filters()))
            self._by_type, self._gen = by_type, gen
        return self._by_type.get(resource_type, [])
