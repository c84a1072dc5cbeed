"""Waiting on the first copy: when the same request arrives twice (a partner's retry, a resend),
the first copy claims a key in Redis and is processed; later copies wait here for its result.

The record under the key is JSON with a ``state`` of ``pending`` or ``done``; the claim is
deleted when the first copy fails, so that a later copy may be processed afresh.
"""

from __future__ import annotations

import json
import time

from redis import Redis
from redis.exceptions import RedisError

from proxy.errors import FhirError

POLL_S = 0.05


def first_result(redis: Redis, key: str, what: str, wait_s: float, check=None) -> dict:
    """The first copy's record once it is ``done``. ``what`` names the request in refusals
    ("message", "delivery"); ``check(record)`` may raise when this copy differs from the first.

    Raises 409 when the first copy failed (its claim is gone: send again) or is still under way
    after ``wait_s`` (retry shortly), and 503 when Redis stops answering while we wait; none of
    these has changed anything.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            raw = redis.get(key)
        except RedisError as exc:  # the claim was read a moment ago: a retry will find it again
            raise FhirError.unavailable(
                f"Cannot tell how the first copy of this {what} went; retry shortly"
            ) from exc
        record = json.loads(raw) if raw else None
        if record is None:
            raise FhirError(
                409,
                f"The first copy of this {what} failed; send it again",
                code="conflict",
                headers={"Retry-After": "1"},
            )
        if check is not None:
            check(record)
        if record.get("state") == "done":
            return record
        if time.monotonic() > deadline:
            raise FhirError(
                409,
                f"The first copy of this {what} is still being processed; retry shortly",
                code="conflict",
                headers={"Retry-After": "2"},
            )
        time.sleep(POLL_S)
