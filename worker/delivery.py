"""Delivery of forwarded messages to partners: one RQ job per delivery.

``enqueue`` records a delivery (``Delivery``) on the forwarding queue with retries (exponential
backoff with jitter) and, for deliveries about the same Task, a dependency on the one before, so
a completion never overtakes the acceptance before it. ``deliver`` (run by the worker) sends it
with our signed-JWT client for that partner; a 401 gets one new token (in ``PartnerTokenClient``);
timeouts, connection errors, 429 and 5xx are retried; any other answer is final: the job fails
without further retries and stays in RQ's failed-job registry (the dead letters), with the
partner's OperationOutcome kept as the reason. Deliveries carry the request id across the hop
and an ``X-Delivery-ID``; the partner's own intake makes a repeated message a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import requests
from redis import Redis
from rq import Callback, Queue, Retry, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from plugins.audit import HANDOFF_SYSTEM, ODS_SYSTEM
from plugins.tenancy import TENANT_SYSTEM
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, TokenRequestError
from proxy.partners import PartnerDirectory
from proxy.store_caller import store_auth
from worker import metrics

log = logging.getLogger("fhirplug.delivery")
QUEUE = "fhirplug-forward"
MAX_RETRIES = 40  # with the backoff capped at 10 minutes: about 6 hours of a partner being away
MAX_BACKOFF_S = 600
LAST_FOR_TASK = "fhirplug:last-delivery:"  # + task key -> the job id of its latest delivery


@dataclass
class Delivery:
    partner: str  # ODS code
    method: str  # POST (a message bundle to the base) or PATCH (a Task)
    path: str  # "" or "Task/123" or "Task?identifier=..."
    body: dict | list
    content_type: str = "application/fhir+json"
    request_id: str | None = None
    task_key: str | None = None  # deliveries about one Task keep their order
    what: str = "message"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    queued_at: float = field(default_factory=time.time)


class PermanentFailure(Exception):
    """The partner refused the delivery for good (a 4xx other than 401/408/429)."""


class RetryableFailure(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after  # the partner's Retry-After, in seconds


def retry_after_of(resp) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff applies


PARTNER_CONCURRENCY = int(os.environ.get("FHIRPLUG_PARTNER_CONCURRENCY", "4"))
INFLIGHT = "fhirplug:inflight:"  # + partner ODS: deliveries to it under way, across all workers


def acquire_slot(redis: Redis, partner: str, limit: int = PARTNER_CONCURRENCY) -> bool:
    """One of the partner's delivery slots; False when ``limit`` are in use (try again shortly)."""
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


def redis_from_env() -> Redis:
    return Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def enqueue(delivery: Delivery, redis: Redis, after: str | None = None) -> str:
    """Queue a delivery behind the latest earlier one for the same Task (or behind ``after``)."""
    queue = Queue(QUEUE, connection=redis)
    if after is None and delivery.task_key:
        prev = redis.get(LAST_FOR_TASK + delivery.task_key)
        after = prev.decode() if prev else None
    depends_on = after if after and after != delivery.id and _pending(redis, after) else None
    queue.enqueue(
        "worker.delivery.deliver",
        asdict(delivery),
        job_id=delivery.id,
        retry=Retry(max=MAX_RETRIES, interval=backoff()),
        on_failure=Callback(stop_retrying_if_final),
        depends_on=depends_on,
        result_ttl=24 * 3600,
        job_timeout=120,  # token request and delivery each time out well before this
        failure_ttl=30 * 24 * 3600,  # dead letters are kept a month for `fhirplug queue replay`
        description=f"{delivery.what} to {delivery.partner}",
    )
    if delivery.task_key:
        redis.set(LAST_FOR_TASK + delivery.task_key, delivery.id, ex=7 * 24 * 3600)
    _metric(metrics.record_queued, redis, delivery.partner)
    log.info(
        "delivery queued",
        extra={
            "fields": {
                "event": "delivery_queued",
                "delivery": delivery.id,
                "partner": delivery.partner,
                "what": delivery.what,
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


_clients: dict[str, PartnerTokenClient] = {}


def _client(partner) -> PartnerTokenClient:
    key = f"{partner.ods}|{partner.client_id}|{partner.token_url}|{partner.key_file}"
    if key not in _clients:
        creds = PartnerCredentials(partner.token_url, partner.client_id, partner.private_jwk(), partner.scope)
        _clients[key] = PartnerTokenClient(creds, timeout=15.0)
    return _clients[key]


def deliver(job: dict) -> dict:
    """The RQ job. Returns what the partner answered; raises to be retried or dead-lettered."""
    d = Delivery(**job)
    partner = PartnerDirectory(redis_from_env()).get(d.partner)
    if partner is None:
        _final(f"no partner {d.partner} in the directory")
    redis = redis_from_env()
    if not acquire_slot(redis, d.partner):
        raise RetryableFailure(f"{PARTNER_CONCURRENCY} deliveries to {d.partner} already under way", 1)
    try:
        return _send(d, partner)
    finally:
        release_slot(redis, d.partner)


def _send(d: Delivery, partner) -> dict:
    url = partner.base_url + ("/" + d.path if d.path else "")
    headers = {"Content-Type": d.content_type, "Accept": "application/fhir+json", "X-Delivery-ID": d.id}
    if d.request_id:
        headers["X-Request-ID"] = d.request_id
    try:
        resp = _client(partner).request(d.method, url, headers=headers, data=json.dumps(d.body))
    except TokenRequestError as exc:
        if exc.retryable:
            _retrying(d)
            raise RetryableFailure(str(exc)) from exc
        _final(f"the partner's token endpoint refused us: {exc}")
    except requests.RequestException as exc:
        _retrying(d)
        raise RetryableFailure(f"{type(exc).__name__}: {exc}") from exc
    latency = time.time() - d.queued_at
    if resp.status_code < 300:
        log.info(
            "delivered",
            extra={
                "fields": {
                    "event": "delivered",
                    "delivery": d.id,
                    "partner": d.partner,
                    "status": resp.status_code,
                    "latency_s": round(latency, 3),
                    "request_id": d.request_id,
                }
            },
        )
        record_delivery(d, partner)
        redis = redis_from_env()
        _metric(metrics.record_delivered, redis, d.partner, latency)
        store = os.environ.get("FHIRPLUG_STORE_URL")
        if store:
            from worker.outbox import done

            done(store, d.id, redis)  # the outbox record has served its purpose
        return {"status": resp.status_code, "latency_s": latency}
    busy = resp.status_code == 409 and resp.headers.get("Retry-After")  # an earlier copy still in hand
    if resp.status_code in (408, 429) or resp.status_code >= 500 or busy:
        _retrying(d)
        raise RetryableFailure(f"{resp.status_code}: {resp.text[:500]}", retry_after_of(resp))
    _final(f"{resp.status_code}: {resp.text[:2000]}")
    raise AssertionError("unreachable")


def _metric(record, *args) -> None:
    try:  # counting must never fail a delivery
        record(*args)
    except Exception:
        log.warning("could not record a delivery metric", exc_info=True)


def _retrying(d: Delivery) -> None:
    """Count the attempt that is about to fail: a retry while any are left, a dead letter after."""
    job = get_current_job()
    if job is not None:
        job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
        job.save_meta()
    left = job.retries_left if job is not None else 0
    _metric(metrics.record_retried if left else metrics.record_dead, redis_from_env(), d.partner)


def stop_retrying_if_final(job, connection, exc_type, exc_value, tb) -> None:
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


def _final(reason: str):
    """Fail for good: no retries left, so RQ moves the job to the failed registry (dead letters)."""
    job = get_current_job()
    if job is not None:
        partner = (job.args[0] if job.args else {}).get("partner", "?")
        _metric(metrics.record_dead, redis_from_env(), partner)
        job.retries_left = 0
        job.meta["dead_letter_reason"] = reason
        job.save_meta()
    log.warning("delivery dead-lettered", extra={"fields": {"event": "dead_letter", "reason": reason[:500]}})
    raise PermanentFailure(reason)


def record_delivery(d: Delivery, partner) -> None:
    """The "delivered to partner" hand-off, as an AuditEvent in our own store (best effort: the
    delivery has happened whether or not its record can be written)."""
    store = os.environ.get("FHIRPLUG_STORE_URL")
    own = os.environ.get("FHIRPLUG_ODS", "")
    if not store:
        return
    what = {"reference": d.path} if d.path.startswith("Task/") else {"display": d.what}
    name = None
    if d.task_key and "|" in d.task_key:
        system, name = d.task_key.split("|", 1)
        what = {"identifier": {"system": system, "value": name}, "display": d.what}
    event = {
        "resourceType": "AuditEvent",
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": c} for c in sorted({own, d.partner} - {""})]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": HANDOFF_SYSTEM, "code": "delivered"}],
        "action": "E",
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0",
        "agent": [
            {
                "who": {"identifier": {"system": ODS_SYSTEM, "value": d.partner}},
                "altId": partner.client_id,
                "requestor": False,
            }
        ],
        "source": {"observer": {"identifier": {"system": ODS_SYSTEM, "value": own or "unknown"}}},
        "entity": [{"what": what, "description": f"delivery {d.id}, request {d.request_id}"}],
    }
    if name:
        event["entity"][0]["name"] = name  # the Task's shared identifier: AuditEvent?entity-name=
    try:
        requests.post(store.rstrip("/") + "/AuditEvent", json=event, timeout=10, auth=store_auth())
    except requests.RequestException:
        log.exception("could not record the delivery's audit event")
