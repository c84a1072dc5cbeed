"""Putting notification work on the queue: the delivery of a subscription's pending events
(retried with forwarding's backoff, dead-lettered like any delivery), its handshake and its
heartbeats. The jobs are the worker's (named here, not imported: ``worker/`` is above us)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry

from forwarding.policy import MAX_RETRIES, backoff, stop_retrying_if_final
from subscriptions import registry

log = logging.getLogger("fhirplug.subscriptions")
QUEUE = "fhirplug-notify"
DELIVER = "worker.notifications.deliver"
HANDSHAKE = "worker.notifications.handshake"
HEARTBEAT = "worker.notifications.heartbeat"


def job_id(sid: str, what: str = "deliver") -> str:
    return f"notify-{what}-{sid}-{uuid.uuid4().hex[:12]}"


def enqueue_delivery(redis: Redis, sid: str, jid: str) -> None:
    """The job that sends ``sid``'s pending events in order (one waits per subscription: the
    ``wake`` marker ``jid`` holds in ``registry``)."""
    Queue(QUEUE, connection=redis).enqueue(
        DELIVER,
        sid,
        job_id=jid,
        retry=Retry(max=MAX_RETRIES, interval=backoff()),
        on_failure=Callback(stop_retrying_if_final),
        result_ttl=3600,
        job_timeout=120,
        failure_ttl=30 * 24 * 3600,  # dead letters kept a month, as forwarding's
        description=f"notifications of Subscription/{sid}",
    )


def enqueue_handshake(redis: Redis, sid: str) -> None:
    Queue(QUEUE, connection=redis).enqueue(
        HANDSHAKE, sid, job_id=job_id(sid, "handshake"), result_ttl=3600, job_timeout=120
    )


def enqueue_heartbeat(redis: Redis, sid: str) -> None:
    Queue(QUEUE, connection=redis).enqueue(
        HEARTBEAT, sid, job_id=job_id(sid, "heartbeat"), result_ttl=600, job_timeout=60
    )


def record_and_wake(redis: Redis, sid: str, event: dict[str, Any]) -> int:
    """Number and keep ``event``; queue the delivery job when none is waiting. The number."""
    jid = job_id(sid)
    n, woken = registry.record(redis, sid, event, jid)
    if woken:
        try:
            enqueue_delivery(redis, sid, jid)
        except Exception:
            # recorded all the same: the worker's tick finds the marker without a job and queues one
            log.exception("could not queue a notification delivery")
    return n
