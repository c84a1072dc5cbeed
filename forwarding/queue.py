"""Putting a delivery on the forwarding queue: with its retry policy, and behind the delivery
before it about the same Task, so a completion never overtakes the acceptance before it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from forwarding import metrics
from forwarding.delivery import QUEUE, Delivery, DeliveryKind
from forwarding.policy import MAX_RETRIES, backoff, stop_retrying_if_final

log = logging.getLogger("fhirplug.delivery")
JOB = "worker.delivery.deliver"  # the RQ job that sends it (named, not imported: worker/ is above us)
# kinds carried by another transport than our HTTP client: the same queue, policy and dead letters
JOBS = {DeliveryKind.GP_NOTIFICATION: "worker.mesh_delivery.deliver"}
LAST_FOR_TASK = "fhirplug:last-delivery:"  # + task key -> the job id of its latest delivery


def enqueue(delivery: Delivery, redis: Redis, after: str | None = None) -> str:
    """Queue a delivery behind the latest earlier one for the same Task (or behind ``after``)."""
    queue = Queue(QUEUE, connection=redis)
    if after is None and delivery.task_key:
        prev = redis.get(LAST_FOR_TASK + delivery.task_key)
        if isinstance(prev, bytes):  # our clients leave decode_responses off: Redis answers bytes
            prev = prev.decode()
        after = prev or None
    depends_on = after if after and after != delivery.id and _pending(redis, after) else None
    queue.enqueue(
        JOBS.get(delivery.kind, JOB),
        delivery.to_dict(),
        job_id=delivery.id,
        retry=Retry(max=MAX_RETRIES, interval=backoff()),
        on_failure=Callback(stop_retrying_if_final),
        depends_on=depends_on,
        result_ttl=24 * 3600,
        job_timeout=120,  # token request and delivery each time out well before this
        failure_ttl=30 * 24 * 3600,  # dead letters are kept a month for `fhirplug queue replay`
        description=f"{delivery.label} to {delivery.partner}",
    )
    if delivery.task_key:
        redis.set(LAST_FOR_TASK + delivery.task_key, delivery.id, ex=7 * 24 * 3600)
    count(metrics.record_queued, redis, delivery.partner)
    log.info(
        "delivery queued",
        extra={
            "fields": {
                "event": "delivery_queued",
                "delivery": delivery.id,
                "partner": delivery.partner,
                "what": delivery.label,
                "request_id": delivery.request_id,
            }
        },
    )
    return delivery.id


def _pending(redis: Redis, job_id: str) -> bool:
    """Is that job still to run? A finished one need not be waited for, a lost one cannot be."""
    try:
        status = Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return False
    return status not in (JobStatus.FINISHED, JobStatus.CANCELED, JobStatus.STOPPED)


def count(record: Callable[..., None], *args: Any) -> None:
    """Record a delivery metric; counting must never fail a delivery."""
    try:
        record(*args)
    except Exception:
        log.warning("could not record a delivery metric", exc_info=True)
