"""What a delivery job of any kind does when an attempt fails: count it (a retry while any are
left, a dead letter after) or fail for good with its reason, where ``fhirplug queue dead`` and
``/metrics`` show it. Shared by the partner deliveries (worker/delivery.py) and the MESH sends
(worker/mesh_delivery.py)."""

from __future__ import annotations

import logging

from redis import Redis
from rq import get_current_job

from forwarding import metrics
from forwarding.policy import PermanentFailure
from forwarding.queue import count

log = logging.getLogger("fhirplug.delivery")


def attempt_failed(redis: Redis, partner: str) -> int:
    """Count the attempt about to fail; the retries left after it (0: this was the last)."""
    job = get_current_job()
    if job is not None:
        job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
        job.save_meta()
    left = job.retries_left if job is not None else 0
    count(metrics.record_retried if left else metrics.record_dead, redis, partner)
    return int(left or 0)


def dead_letter(redis: Redis, partner: str, reason: str, what: str = "delivery") -> PermanentFailure:
    """Mark the job failed for good (no retries left: RQ moves it to the failed registry, the dead
    letters) with ``reason``; the exception for the job to raise."""
    job = get_current_job()
    if job is not None:
        job.retries_left = 0
        job.meta["dead_letter_reason"] = reason
        job.save_meta()
    count(metrics.record_dead, redis, partner)
    log.warning(f"{what} dead-lettered", extra={"fields": {"event": "dead_letter", "reason": reason[:500]}})
    return PermanentFailure(reason)
