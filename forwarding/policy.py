"""The retry policy of a delivery: which answers are final, the backoff with jitter, a partner's
Retry-After, and how many deliveries to one partner may be under way at once."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

MAX_RETRIES = 40  # with the backoff capped at 10 minutes: about 6 hours of a partner being away
MAX_BACKOFF_S = 600
LEASES = "fhirplug:lease:"  # + partner ODS + ":" + slot: the delivery holding that slot
# longer than one delivery can take (a token request and the partner's answer, 15 s each, and one
# more of each after a 401): a dead holder's slot is free again within this
LEASE_TTL_S = 75
BUSY_WAIT_S = 1.0  # (kept for PartnerBusy's signature; a busy delivery is requeued at once)
# a delivery that finds every slot leased looks for a free one this long in its worker (every
# BUSY_POLL_S) before it goes back on the queue: a slot given back is taken within a poll, and a
# worker is not held long from deliveries to other partners
BUSY_HOLD_S = 2.0
BUSY_POLL_S = 0.05


class PermanentFailure(Exception):
    """The partner refused the delivery for good (a 4xx other than 401/408/429)."""


class RetryableFailure(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # the partner's Retry-After, in seconds


def retry_after_of(resp: Any) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff applies


def acquire_slot(redis: Redis, partner: str, limit: int, holder: str, ttl_s: int = LEASE_TTL_S) -> str | None:
    """A lease on one of the partner's ``limit`` delivery slots for ``holder`` (a delivery id),
    or None when all are held (try again shortly). ``limit`` is the worker's
    ``FHIRPLUG_PARTNER_CONCURRENCY`` and ``ttl_s`` its ``FHIRPLUG_LEASE_SECONDS`` (``WorkerSettings``).

    Each slot is a key of its own, taken with SET NX and an expiry of :data:`LEASE_TTL_S`, longer
    than any one delivery can take; so a holder that dies (a SIGKILLed worker, a Redis that
    restarted from an older snapshot) gives its slot back by itself within one TTL, and nothing
    counts up that a crash could leave high. The answer is the slot's key, for ``release_slot``."""
    for n in range(max(1, limit)):
        key = f"{LEASES}{partner}:{n}"
        if redis.set(key, holder, nx=True, ex=ttl_s):
            return key
        if _text(redis.get(key)) == holder:
            return key  # ours already (a job run again after its worker died mid-delivery)
    return None


def wait_for_slot(
    redis: Redis,
    partner: str,
    limit: int,
    holder: str,
    ttl_s: int = LEASE_TTL_S,
    hold_s: float = BUSY_HOLD_S,
    sleep=time.sleep,
) -> str | None:
    """:func:`acquire_slot`, looking again every :data:`BUSY_POLL_S` for up to ``hold_s``; None
    when the partner stayed full (the job is then rescheduled, at no cost to its retries)."""
    deadline = time.monotonic() + hold_s
    while True:
        lease = acquire_slot(redis, partner, limit, holder, ttl_s)
        if lease is not None or time.monotonic() >= deadline:
            return lease
        sleep(BUSY_POLL_S)


@contextmanager
def holding(redis: Redis, lease: str, holder: str, ttl_s: int = LEASE_TTL_S) -> Iterator[None]:
    """Hold ``lease`` while the block runs: a thread renews its expiry every third of ``ttl_s``,
    so a delivery that takes longer than one lease (a slow partner) keeps its slot and the
    partner never gets more than its limit; and the slot is given back at the end. A holder that
    dies stops renewing, and its slot is free again within ``ttl_s``."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(max(1.0, ttl_s / 3)):
            try:
                if _text(redis.get(lease)) != holder:
                    return  # lapsed and taken (Redis restarted from an older state): not ours
                redis.expire(lease, ttl_s)
            except RedisError:
                pass  # Redis away: the lease lapses, as a dead holder's would

    keeper = threading.Thread(target=renew, name="lease-renewal", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        release_slot(redis, lease, holder)


def release_slot(redis: Redis, lease: str, holder: str) -> None:
    """Give the slot back, if it is still ``holder``'s (a lease that outlived its TTL may be
    another delivery's by now: that one keeps it)."""
    if _text(redis.get(lease)) == holder:
        redis.delete(lease)


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else value if isinstance(value, str) else None


class PartnerBusy(RetryableFailure):
    """Every slot of the partner is leased: the delivery waits for one, and the wait is not a
    retry (it costs none of the job's retry budget)."""

    def __init__(self, message: str):
        super().__init__(message, BUSY_WAIT_S)


def backoff(retries: int = MAX_RETRIES) -> list[int]:
    """1, 2, 4, ... seconds, each with up to 25 % jitter so retries of many jobs spread out."""
    return [max(1, round(min(2**i, MAX_BACKOFF_S) * random.uniform(0.75, 1.25))) for i in range(retries)]


def stop_retrying_if_final(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """RQ's failure callback, run on the job instance RQ then decides about: a final answer is
    not retried, so the job goes straight to the failed registry (the dead letters); a partner's
    Retry-After stretches the wait before the next try and is kept to the millisecond in the
    job's ``not_before`` (see :func:`wait_until_due`); a busy partner costs no retry."""
    if isinstance(exc_value, PermanentFailure):
        job.retries_left = 0
        return
    if not isinstance(exc_value, RetryableFailure) or not job.retries_left:
        return
    intervals = list(job.retry_intervals or [])
    if isinstance(exc_value, PartnerBusy):
        # not a try: give back the retry RQ is about to take, and go straight back on the queue
        # (an interval of 0: RQ requeues rather than schedules), behind what is waiting; the job
        # already looked for a slot for BUSY_HOLD_S. Not through the scheduler: a worker killed
        # with its scheduler leaves the scheduler's lock held for a minute, and busy deliveries
        # would wait that long for slots long free
        job.retries_left += 1
        nxt = len(intervals) - job.retries_left
        if 0 <= nxt < len(intervals):
            intervals[nxt] = 0
            job.retry_intervals = intervals
        return
    if exc_value.retry_after:
        nxt = len(intervals) - job.retries_left  # the interval RQ will use for this retry
        if 0 <= nxt < len(intervals):
            # RQ schedules in whole seconds and rounds the due time down, so a wait of exactly
            # ceil(Retry-After) could start up to a second early: one more second, and the job
            # itself waits out the rest to the millisecond (``not_before``)
            intervals[nxt] = max(intervals[nxt], math.ceil(exc_value.retry_after) + 1)
            job.retry_intervals = intervals
        meta = getattr(job, "meta", None)
        if isinstance(meta, dict):
            meta["not_before"] = time.time() + exc_value.retry_after
            if hasattr(job, "save_meta"):
                job.save_meta()


MAX_EARLY_WAIT_S = 3.0  # never hold a worker longer than this for a due time


def wait_until_due(job: Any) -> None:
    """A retry RQ started before the partner's Retry-After had passed waits out the rest here
    (RQ's scheduler works in whole seconds; a partner's Retry-After is a promise to the second)."""
    meta = getattr(job, "meta", None)
    due = meta.get("not_before") if isinstance(meta, dict) else None
    if isinstance(due, int | float):
        early = due - time.time()
        if 0 < early <= MAX_EARLY_WAIT_S:
            time.sleep(early)
