"""Waiting on the first copy: when the same request arrives twice (a partner's retry, a resend),
the first copy claims a key in Redis and is processed; later copies wait here for its result.

The record under the key is JSON with a ``state`` of ``pending`` or ``done``; the claim is
deleted when the first copy fails, so that a later copy may be processed afresh. A claim whose
deletion failed (Redis went away while the first copy answered) is remembered in the process
(:func:`owe_release`) and deleted as soon as Redis answers again (:func:`settle_releases`), so a
resend is not held for the claim's whole lifetime.

Every "not yet" is a 503 with ``Retry-After`` (code ``transient``): a client that reads a 4xx
as final must not give up on a message whose first copy merely has not finished.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from proxy.errors import FhirError

log = logging.getLogger("fhirplug.first_copy")
POLL_S = 0.05
RELEASE_EVERY_S = 1.0  # how often a process owing releases tries Redis again
_owed: set[str] = set()  # claims this process failed to release (Redis was away)
_owed_lock = threading.Lock()
_releaser: list[threading.Thread] = []


def owe_release(redis: Redis, key: str) -> None:
    """The first copy failed and its claim could not be deleted: a thread of this process
    deletes it as soon as Redis answers again (every :data:`RELEASE_EVERY_S`)."""
    with _owed_lock:
        _owed.add(key)
        if _releaser and _releaser[0].is_alive():
            return
        thread = threading.Thread(
            target=_release_until_done, args=(redis,), name="claim-release", daemon=True
        )
        _releaser[:] = [thread]
    thread.start()


def _release_until_done(redis: Redis) -> None:
    while True:
        time.sleep(RELEASE_EVERY_S)
        settle_releases(redis)
        with _owed_lock:
            if not _owed:
                _releaser.clear()
                return


def settle_releases(redis: Redis) -> None:
    """Delete the claims this process owes (cheap when it owes none); what fails stays owed."""
    if not _owed:
        return
    with _owed_lock:
        keys = list(_owed)
    for key in keys:
        try:
            raw = redis.get(key)
            if raw is not None and json.loads(raw).get("state") == "pending":
                redis.delete(key)
        except RedisError:
            return
        except ValueError:
            pass
        with _owed_lock:
            _owed.discard(key)
        log.info("released a failed copy's claim", extra={"fields": {"event": "claim_released"}})


def first_result(redis: Redis, key: str, what: str, wait_s: float, check=None) -> dict:
    """The first copy's record once it is ``done``. ``what`` names the request in refusals
    ("message", "delivery"); ``check(record)`` may raise when this copy differs from the first.

    Raises 503 with ``Retry-After`` when the first copy failed (its claim is gone: send again at
    once), is still under way after ``wait_s`` (retry after a few seconds), or when Redis stops
    answering while we wait; none of these has changed anything.
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
            raise FhirError.unavailable(f"The first copy of this {what} failed; send it again", 1)
        if check is not None:
            check(record)
        if record.get("state") == "done":
            return record
        if time.monotonic() > deadline:
            raise FhirError.unavailable(
                f"The first copy of this {what} is still being processed; retry shortly", 2
            )
        time.sleep(POLL_S)
