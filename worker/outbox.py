"""The outbox sweep: an intent to forward is kept in the store itself (forwarding/outbox.py), so
no crash can lose it.

For a hub-and-spoke message the record is one more entry of the message's own transaction: both
are stored, or neither. For a Task change it is written just before the Task, with the Task
version the change will make; if the change then fails, the record is dropped.

Delivery is queued in Redis right after the store answers. When that did not happen (the proxy
died between the two, Redis lost its data), the sweep finds the record still pending and queues
it again; a record whose delivery is done is removed (by the worker, or by the sweep when the
worker could not). A job already known to Redis is never queued twice, and the receiving side
treats a repeated delivery id as the same delivery, so a second send has no second effect.
Everything it writes to the store goes through ``DirectStore``: signed, and fenced.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import requests
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler

from forwarding.delivery import QUEUE
from forwarding.outbox import SEARCH, delivery_of, expected_version_of, subject_of
from forwarding.queue import enqueue
from proxy.direct_store import DirectStore
from proxy.errors import FhirError

log = logging.getLogger("fhirplug.outbox")
SWEEP_LOCK = "fhirplug:outbox:sweep"
GRACE_S = 30  # a record younger than this may still be in the hands of the request that wrote it


def done(store: DirectStore, delivery_id: str) -> None:
    """The delivery happened: its outbox record goes (idempotent)."""
    try:
        store.delete(f"Basic/{delivery_id}")
    except (requests.RequestException, FhirError):
        log.warning("could not remove outbox record %s; the sweep will", delivery_id)


def _pending(store: DirectStore) -> list[dict]:
    out = []
    params = {**SEARCH, "_count": "200", "_sort": "_lastUpdated"}
    resp = store.get("Basic", params=params, timeout=30)
    resp.raise_for_status()
    for e in resp.json().get("entry") or []:
        out.append(e["resource"])
    return out


def _happened(store: DirectStore, basic: dict) -> bool | None:
    """For a Task change: did the write the record announces reach the store? None: not yet known."""
    version = expected_version_of(basic)
    if not version:
        return True  # written in the same transaction as what it announces
    r = store.get(f"{subject_of(basic)}/_history/{version}", timeout=10)
    if r.status_code == 200:
        return True
    return False if r.status_code in (404, 410) else None


def sweep(store: DirectStore, redis: Redis, grace_s: float = GRACE_S) -> dict[str, int]:
    """Queue what is pending but unknown to Redis; remove records of finished or failed writes."""
    counts = {"requeued": 0, "removed": 0, "in_queue": 0, "dropped": 0}
    if not redis.set(SWEEP_LOCK, b"1", nx=True, ex=60):
        return counts  # another worker is sweeping
    try:
        recover_abandoned(redis)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        latest: dict[str, str] = {}  # task key -> the latest delivery seen for it, oldest first
        for basic in _pending(store):
            key = delivery_of(basic).task_key
            before, latest[key or basic["id"]] = latest.get(key or basic["id"]), basic["id"]
            updated = datetime.fromisoformat(basic["meta"]["lastUpdated"].replace("Z", "+00:00"))
            if updated > cutoff:
                continue
            status = _status(redis, basic["id"])
            if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
                counts["in_queue"] += 1  # on its way
            elif status == JobStatus.FAILED:
                counts["in_queue"] += 1  # a dead letter: waits for an operator (`fhirplug queue replay`)
            elif status == JobStatus.FINISHED:
                done(store, basic["id"])
                counts["removed"] += 1
            else:
                happened = _happened(store, basic)
                if happened is None:
                    continue
                if not happened:
                    done(store, basic["id"])
                    counts["dropped"] += 1
                    continue
                enqueue(delivery_of(basic), redis, after=before)  # behind the earlier one for its Task
                counts["requeued"] += 1
                fields = {"event": "requeued", "delivery": basic["id"]}
                log.info("outbox record queued again", extra={"fields": fields})
    finally:
        redis.delete(SWEEP_LOCK)
    return counts


def recover_abandoned(redis: Redis) -> None:
    """A job whose worker died mid-delivery is retried once its heartbeat has lapsed (RQ's worker
    looks only between jobs, and an idle one can sit in its blocking pop for minutes), and
    retries fall due even while no scheduler runs."""
    StartedJobRegistry(QUEUE, connection=redis).cleanup()
    run_due_retries(redis)


def run_due_retries(redis: Redis) -> None:
    """Stand in for a scheduler that died. Retries falling due are queued by the scheduler of one
    worker, which holds a lock; when a worker is killed its lock outlives it for a minute and an
    idle worker only tries to take it over every few minutes. While no scheduler holds the lock,
    the sweep takes it just long enough to queue what is due, using RQ's own scheduler code."""
    if redis.exists(RQScheduler.get_locking_key(QUEUE)):
        return  # a live scheduler is on it
    if not ScheduledJobRegistry(QUEUE, connection=redis).get_jobs_to_schedule(chunk_size=1):
        return  # nothing due: leave the lock alone for a worker's own scheduler to take
    scheduler = RQScheduler([QUEUE], connection=redis)
    if scheduler.acquire_locks():
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


def recover_forever(redis: Redis, every_s: float = 15.0, stop=None) -> None:
    """:func:`recover_abandoned` on its own, for a worker with no store to sweep."""
    while stop is None or not stop.is_set():
        try:
            recover_abandoned(redis)
        except Exception:
            log.warning("could not look for abandoned jobs; trying again", exc_info=True)
        time.sleep(every_s)


def _status(redis: Redis, job_id: str):
    try:
        return Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return None


def sweep_forever(store_url: str, redis: Redis, every_s: float = 15.0, stop=None) -> None:
    store = DirectStore(store_url, redis)
    while stop is None or not stop.is_set():
        try:
            counts = sweep(store, redis)
            if counts["requeued"] or counts["dropped"]:
                log.info("outbox swept", extra={"fields": {"event": "sweep", **counts}})
        except Exception:
            log.exception("outbox sweep failed; trying again")
        time.sleep(every_s)
