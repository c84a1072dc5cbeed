"""The outbox: an intent to forward, kept in the store itself, so no crash can lose it.

Each delivery is first written to the store as a ``Basic`` resource whose id is the delivery id
and which carries the whole delivery. For a hub-and-spoke message that record is one more entry
of the message's own transaction: both are stored, or neither. For a Task change it is written
just before the Task, with the Task version the change will make; if the change then fails,
the record is dropped.

Delivery is queued in Redis right after the store answers. When that did not happen (the proxy
died between the two, Redis lost its data), the sweep finds the record still pending and queues
it again; a record whose delivery is done is removed (by the worker, or by the sweep when the
worker could not). A job already known to Redis is never queued twice, and the receiving side
treats a repeated delivery id as the same delivery, so a second send has no second effect.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import requests
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from proxy import read_cache
from proxy.errors import FhirError
from proxy.store_caller import store_auth
from worker.delivery import QUEUE, Delivery, enqueue

log = logging.getLogger("fhirplug.outbox")
OUTBOX_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/outbox"
DELIVERY_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/outbox-delivery"
EXPECTED_VERSION_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/outbox-expected-version"
SWEEP_LOCK = "fhirplug:outbox:sweep"
GRACE_S = 30  # a record younger than this may still be in the hands of the request that wrote it


def record(delivery: Delivery, subject: str, expected_version: str | None = None) -> dict:
    """The outbox record of a delivery; ``subject`` is the Task (its id, or its fullUrl in a bundle)."""
    basic = {
        "resourceType": "Basic",
        "id": delivery.id,
        "code": {"coding": [{"system": OUTBOX_SYSTEM, "code": "delivery"}]},
        "subject": {"reference": subject},
        "created": datetime.now(UTC).date().isoformat(),
        "extension": [{"url": DELIVERY_EXTENSION, "valueString": json.dumps(asdict(delivery))}],
    }
    if expected_version:
        basic["extension"].append({"url": EXPECTED_VERSION_EXTENSION, "valueString": expected_version})
    return basic


def delivery_of(basic: dict) -> Delivery:
    ext = {e["url"]: e.get("valueString") for e in basic.get("extension") or []}
    d = Delivery(**json.loads(ext[DELIVERY_EXTENSION]))
    subject = (basic.get("subject") or {}).get("reference", "")
    if d.method == "POST" and isinstance(d.body, dict) and subject.startswith("Task/"):
        # a spoke-to-hub message tells the hub our Task's id, known once it was stored
        for e in d.body.get("entry") or []:
            if (e.get("resource") or {}).get("resourceType") == "Task":
                e["resource"]["id"] = subject.split("/")[1]
    return d


def done(store_url: str, delivery_id: str, redis: Redis) -> None:
    """The delivery happened: its outbox record goes (idempotent)."""
    try:
        # written past the proxy, so fenced like the proxy's own writes (proxy/read_cache.py)
        with read_cache.WriteFence(redis, marker_ttl_s=120).write():
            requests.delete(f"{store_url.rstrip('/')}/Basic/{delivery_id}", timeout=10, auth=store_auth())
    except (requests.RequestException, FhirError):
        log.warning("could not remove outbox record %s; the sweep will", delivery_id)


def _pending(store_url: str) -> list[dict]:
    out, url = [], f"{store_url.rstrip('/')}/Basic"
    params = {"code": f"{OUTBOX_SYSTEM}|delivery", "_count": "200", "_sort": "_lastUpdated"}
    resp = requests.get(
        url, params=params, headers={"Accept": "application/fhir+json"}, timeout=30, auth=store_auth()
    )
    resp.raise_for_status()
    for e in resp.json().get("entry") or []:
        out.append(e["resource"])
    return out


def _happened(store_url: str, basic: dict) -> bool | None:
    """For a Task change: did the write the record announces reach the store? None: not yet known."""
    ext = {e["url"]: e.get("valueString") for e in basic.get("extension") or []}
    version = ext.get(EXPECTED_VERSION_EXTENSION)
    if not version:
        return True  # written in the same transaction as what it announces
    subject = (basic.get("subject") or {}).get("reference", "")
    r = requests.get(f"{store_url.rstrip('/')}/{subject}/_history/{version}", timeout=10, auth=store_auth())
    if r.status_code == 200:
        return True
    return False if r.status_code in (404, 410) else None


def sweep(store_url: str, redis: Redis, grace_s: float = GRACE_S) -> dict[str, int]:
    """Queue what is pending but unknown to Redis; remove records of finished or failed writes."""
    counts = {"requeued": 0, "removed": 0, "in_queue": 0, "dropped": 0}
    if not redis.set(SWEEP_LOCK, b"1", nx=True, ex=60):
        return counts  # another worker is sweeping
    try:
        # a job whose worker died mid-delivery is retried once its heartbeat has lapsed
        StartedJobRegistry(QUEUE, connection=redis).cleanup()
        run_due_retries(redis)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        latest: dict[str, str] = {}  # task key -> the latest delivery seen for it, oldest first
        for basic in _pending(store_url):
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
                done(store_url, basic["id"], redis)
                counts["removed"] += 1
            else:
                happened = _happened(store_url, basic)
                if happened is None:
                    continue
                if not happened:
                    done(store_url, basic["id"], redis)
                    counts["dropped"] += 1
                    continue
                enqueue(delivery_of(basic), redis, after=before)  # behind the earlier one for its Task
                counts["requeued"] += 1
                fields = {"event": "requeued", "delivery": basic["id"]}
                log.info("outbox record queued again", extra={"fields": fields})
    finally:
        redis.delete(SWEEP_LOCK)
    return counts


def run_due_retries(redis: Redis) -> None:
    """Stand in for a scheduler that died. Retries falling due are queued by the scheduler of one
    worker, which holds a lock; when a worker is killed its lock outlives it for a minute and an
    idle worker only tries to take it over every few minutes. While no scheduler holds the lock,
    the sweep takes it just long enough to queue what is due, using RQ's own scheduler code."""
    if redis.exists(RQScheduler.get_locking_key(QUEUE)):
        return  # a live scheduler is on it
    scheduler = RQScheduler([QUEUE], connection=redis)
    if scheduler.acquire_locks():
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


def _status(redis: Redis, job_id: str):
    try:
        return Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return None


def sweep_forever(store_url: str, redis: Redis, every_s: float = 15.0, stop=None) -> None:
    while stop is None or not stop.is_set():
        try:
            counts = sweep(store_url, redis)
            if counts["requeued"] or counts["dropped"]:
                log.info("outbox swept", extra={"fields": {"event": "sweep", **counts}})
        except Exception:
            log.exception("outbox sweep failed; trying again")
        time.sleep(every_s)
