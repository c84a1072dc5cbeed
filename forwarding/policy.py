"""The retry policy of a delivery: which answers are final, the backoff with jitter, a partner's
Retry-After, and how many deliveries to one partner may be under way at once."""

from __future__ import annotations

import random
from typing import Any

from redis import Redis

MAX_RETRIES = 40  # with the backoff capped at 10 minutes: about 6 hours of a partner being away
MAX_BACKOFF_S = 600
INFLIGHT = "fhirplug:inflight:"  # + partner ODS: deliveries to it under way, across all workers


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


def acquire_slot(redis: Redis, partner: str, limit: int) -> bool:
    """One of the partner's delivery slots; False when ``limit`` are in use (try again shortly).
    ``limit`` is the worker's ``FHIRPLUG_PARTNER_CONCURRENCY`` (``WorkerSettings``)."""
    key = INFLIGHT + partner
    in_use = redis.incr(key)
    redis.expire(key, 300)  # a worker that died holding a slot gives it back within minutes
    if in_use > limit:
        redis.decr(key)
        return False
    return True


def release_slot(redis: Redis, partner: str) -> None:
    redis.decr(INFLIGHT + partner)


def backoff(retries: int = MAX_RETRIES) -> list[int]:
    """1, 2, 4, ... seconds, each with up to 25 % jitter so retries of many jobs spread out."""
    return [max(1, round(min(2**i, MAX_BACKOFF_S) * random.uniform(0.75, 1.25))) for i in range(retries)]


def stop_retrying_if_final(job: Any, connection: Any, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """RQ's failure callback, run on the job instance RQ then decides about: a final answer is
    not retried, so the job goes straight to the failed registry (the dead letters); a partner's
    Retry-After stretches the wait before the next try."""
    if isinstance(exc_value, PermanentFailure):
        job.retries_left = 0
    elif isinstance(exc_value, RetryableFailure) and exc_value.retry_after and job.retries_left:
        intervals = list(job.retry_intervals or [])
        nxt = len(intervals) - job.retries_left  # the interval RQ will use for this retry
        if 0 <= nxt < len(intervals):
            intervals[nxt] = max(intervals[nxt], int(exc_value.retry_after + 0.999))
            job.retry_intervals = intervals
