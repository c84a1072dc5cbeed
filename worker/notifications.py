"""The RQ jobs of event notifications (``subscriptions``): a subscription's handshake, the
delivery of its events in order, its heartbeats; and the tick that keeps them going.

- ``deliver(sid)`` sends every event not yet acknowledged, one notification per event number,
  in order, holding the subscription's lease (one delivery at a time per subscriber). A 2xx
  acknowledges that number; a timeout, connection error, 408, 429 or 5xx is retried with
  forwarding's backoff (the same job, so the same event number comes again, and nothing after it
  overtakes it); any other answer is final: the job goes to the dead letters and the tick sets the
  subscription to ``error``. A crash between the subscriber's 2xx and our acknowledgement sends
  that number again: the subscriber dedupes by event number.
- ``handshake(sid)`` sends the handshake of a ``requested`` subscription; a 2xx makes it
  ``active``, anything else (three tries) ``error``; both recorded in the store's Subscription.
- ``heartbeat(sid)`` tells an idle subscriber we are still here, per its heartbeat period.
- ``tick_forever`` (a thread of ``python -m worker``): queues heartbeats that are due and a
  delivery for any subscription with pending events and no job to send them (a proxy that could
  not queue one, a job lost with its worker), and marks dead-lettered subscriptions ``error``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from redis import Redis
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler

from forwarding.policy import LEASE_TTL_S, PartnerBusy, PermanentFailure, RetryableFailure, retry_after_of
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, TokenRequestError
from proxy.config import WorkerSettings
from proxy.direct_store import DirectStore
from proxy.partners import PartnerDirectory
from subscriptions import bundles, queue, registry
from subscriptions.resource import Spec

log = logging.getLogger("fhirplug.notifications")
TICK_LOCK = "fhirplug:subs:tick"
HANDSHAKE_TRIES = 3
SEND_TIMEOUT_S = 15.0


@dataclass
class _Process:
    settings: WorkerSettings | None = None
    redis: Redis | None = None


_process = _Process()
_clients: dict[str, PartnerTokenClient] = {}


def configure(settings: WorkerSettings, redis: Redis | None = None) -> None:
    """The worker's settings and its jobs' Redis client, once before the worker takes jobs."""
    _process.settings = settings
    _process.redis = redis if redis is not None else Redis.from_url(settings.redis_url)


def _worker() -> tuple[WorkerSettings, Redis]:
    if _process.settings is None or _process.redis is None:
        configure(WorkerSettings.from_env())
    assert _process.settings is not None and _process.redis is not None
    return _process.settings, _process.redis


# ---------------------------------------------------------------- sending


def send(redis: Redis, spec: Spec, bundle: dict[str, Any]) -> int:
    """POST ``bundle`` to the subscriber; its status. Raises ``RetryableFailure`` or
    ``PermanentFailure`` as forwarding's policy says."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    for h in spec.headers:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    data = json.dumps(bundle)
    try:
        if spec.partner:
            partner = PartnerDirectory(redis).get(spec.partner)
            if partner is None:
                raise PermanentFailure(f"no partner {spec.partner} in the directory any more")
            resp = _client(partner).request("POST", spec.endpoint, headers=headers, data=data)
        else:
            resp = requests.post(spec.endpoint, headers=headers, data=data, timeout=SEND_TIMEOUT_S)
    except TokenRequestError as exc:
        if exc.retryable:
            raise RetryableFailure(str(exc)) from exc
        raise PermanentFailure(f"the partner's token endpoint refused us: {exc}") from exc
    except requests.RequestException as exc:
        raise RetryableFailure(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code < 300:
        return resp.status_code
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        raise RetryableFailure(f"{resp.status_code}: {resp.text[:300]}", retry_after_of(resp))
    raise PermanentFailure(f"{resp.status_code}: {resp.text[:1000]}")


def _client(partner) -> PartnerTokenClient:
    k = f"{partner.ods}|{partner.client_id}|{partner.token_url}|{partner.key_file}"
    if k not in _clients:
        creds = PartnerCredentials(partner.token_url, partner.client_id, partner.private_jwk(), partner.scope)
        _clients[k] = PartnerTokenClient(creds, timeout=SEND_TIMEOUT_S)
    return _clients[k]


def _lease(redis: Redis, sid: str, holder: str) -> bool:
    k = registry.key(sid, "lease")
    if redis.set(k, holder, nx=True, ex=LEASE_TTL_S):
        return True
    current = redis.get(k)
    return (current.decode() if isinstance(current, bytes) else current) == holder


def _release(redis: Redis, sid: str, holder: str) -> None:
    k = registry.key(sid, "lease")
    current = redis.get(k)
    if (current.decode() if isinstance(current, bytes) else current) == holder:
        redis.delete(k)


# ---------------------------------------------------------------- the jobs


def deliver(sid: str) -> dict[str, Any]:
    """Send ``sid``'s unacknowledged events in order; raises to be retried or dead-lettered."""
    _, redis = _worker()
    job = get_current_job()
    jid = job.id if job is not None else queue.job_id(sid)
    spec = registry.get(redis, sid)
    if spec is None or spec.status != "active":
        registry.clear_wake(redis, sid, jid)  # a new activation queues its own delivery
        return {"sent": 0, "status": spec.status if spec else "gone"}
    if not _lease(redis, sid, jid):
        raise PartnerBusy(f"a delivery to Subscription/{sid} is already under way")
    sent = 0
    try:
        while True:
            n = registry.acked(redis, sid) + 1
            latest = registry.latest(redis, sid)
            if n > latest:
                # drained: let the next event queue a job of its own, unless one came meanwhile
                registry.clear_wake(redis, sid, jid)
                if registry.latest(redis, sid) < n or not registry.claim_wake(redis, sid, jid):
                    break
                continue
            found = registry.event(redis, sid, n)
            if found is None:  # not kept (should not happen): never block the ones after it
                log.warning("event %s of Subscription/%s is missing; skipped", n, sid)
                registry.acknowledge(redis, sid, n)
                continue
            bundle = bundles.notification(spec, spec.base, "event-notification", latest, [found])
            send(redis, spec, bundle)
            registry.acknowledge(redis, sid, n)
            registry.mark_sent(redis, sid)
            sent += 1
            log.info(
                "notification sent",
                extra={"fields": {"event": "notified", "subscription": sid, "number": n}},
            )
    finally:
        _release(redis, sid, jid)
    return {"sent": sent}


def handshake(sid: str) -> dict[str, Any]:
    """The handshake of a requested subscription: ``active`` on a 2xx, ``error`` otherwise."""
    settings, redis = _worker()
    spec = registry.get(redis, sid)
    if spec is None or spec.status != "requested":
        return {"status": spec.status if spec else "gone"}
    problem = ""
    for attempt in range(HANDSHAKE_TRIES):
        bundle = bundles.notification(spec, spec.base, "handshake", registry.latest(redis, sid), [])
        try:
            send(redis, spec, bundle)
            problem = ""
            break
        except (RetryableFailure, PermanentFailure) as exc:
            problem = f"handshake failed: {exc}"
            if isinstance(exc, PermanentFailure):
                break
            time.sleep(attempt + 1)
    status = "error" if problem else "active"
    spec = registry.set_status(redis, sid, status, problem) or spec
    record_status(settings, redis, spec)
    if status == "active":
        registry.mark_sent(redis, sid)
        _wake_if_pending(redis, sid)
    log.info(
        "subscription handshake",
        extra={"fields": {"event": "handshake", "subscription": sid, "status": status, "error": problem}},
    )
    return {"status": status}


def heartbeat(sid: str) -> dict[str, Any]:
    """A heartbeat, unless a delivery is under way or pending (that says we are alive)."""
    _, redis = _worker()
    spec = registry.get(redis, sid)
    if spec is None or spec.status != "active" or not spec.heartbeat_s:
        return {"sent": False}
    holder = queue.job_id(sid, "heartbeat")
    if not redis.set(registry.key(sid, "lease"), holder, nx=True, ex=LEASE_TTL_S):
        return {"sent": False}
    try:
        latest = registry.latest(redis, sid)
        if registry.acked(redis, sid) < latest:
            return {"sent": False}
        try:
            send(redis, spec, bundles.notification(spec, spec.base, "heartbeat", latest, []))
        except (RetryableFailure, PermanentFailure) as exc:
            log.info("heartbeat not delivered to Subscription/%s: %s", sid, exc)
            return {"sent": False}
        registry.mark_sent(redis, sid)
        return {"sent": True}
    finally:
        _release(redis, sid, holder)


def _wake_if_pending(redis: Redis, sid: str) -> None:
    if registry.acked(redis, sid) < registry.latest(redis, sid):
        jid = queue.job_id(sid)
        if registry.claim_wake(redis, sid, jid):
            queue.enqueue_delivery(redis, sid, jid)


def record_status(settings: WorkerSettings, redis: Redis, spec: Spec) -> None:
    """The subscription's status (and error) in the store's Subscription, so a read shows it;
    best effort: Redis holds the status fhirplug runs by."""
    if not settings.store_url:
        return
    store = DirectStore(settings.store_url, redis)
    try:
        resp = store.get(f"Subscription/{spec.id}")
        if resp.status_code != 200:
            return
        resource = resp.json()
        resource["status"] = spec.status
        if spec.error:
            resource["error"] = spec.error
        else:
            resource.pop("error", None)
        store.put(f"Subscription/{spec.id}", resource)
    except Exception:
        log.exception("could not record Subscription/%s's status in the store", spec.id)
    finally:
        store.close()


# ---------------------------------------------------------------- the tick


def _job_status(redis: Redis, jid: str) -> Any:
    try:
        return Job.fetch(jid, connection=redis).get_status()
    except NoSuchJobError:
        return None


def tick(settings: WorkerSettings, redis: Redis, now: float | None = None) -> dict[str, int]:
    """One round over the subscriptions (one worker at a time: a Redis lock)."""
    counts = {"heartbeats": 0, "woken": 0, "errors": 0}
    if not redis.set(TICK_LOCK, b"1", nx=True, ex=30):
        return counts
    now = now if now is not None else time.time()
    try:
        # an idle worker cleans its registries only every few minutes (RQ's dequeue timeout): a
        # delivery whose worker died is retried here once its heartbeat has lapsed, as the outbox
        # sweep does for forwarding's queue, so a subscriber waits a minute, not several
        StartedJobRegistry(queue.QUEUE, connection=redis).cleanup()
        run_due_retries(redis)
        for spec in registry.all_specs(redis):
            if spec.status != "active":
                continue
            sid = spec.id
            pending = registry.acked(redis, sid) < registry.latest(redis, sid)
            waker = registry.waker(redis, sid)
            status = _job_status(redis, waker) if waker else None
            if status == JobStatus.FAILED:
                reason = "notifications could not be delivered (dead-lettered); catch up with $events"
                spec = registry.set_status(redis, sid, "error", reason) or spec
                registry.clear_wake(redis, sid, waker)
                record_status(settings, redis, spec)
                counts["errors"] += 1
                continue
            if pending and status in (None, JobStatus.FINISHED, JobStatus.CANCELED, JobStatus.STOPPED):
                if waker:
                    registry.clear_wake(redis, sid, waker)
                jid = queue.job_id(sid)
                if registry.claim_wake(redis, sid, jid):
                    queue.enqueue_delivery(redis, sid, jid)
                    counts["woken"] += 1
            if (
                spec.heartbeat_s
                and not pending
                and now - registry.last_sent(redis, sid) >= spec.heartbeat_s
                and redis.set(registry.key(sid, "hb"), b"1", nx=True, ex=max(1, spec.heartbeat_s))
            ):
                queue.enqueue_heartbeat(redis, sid)
                counts["heartbeats"] += 1
    finally:
        redis.delete(TICK_LOCK)
    return counts


def run_due_retries(redis: Redis) -> None:
    """Queue the retries that are due when no worker's scheduler holds the notification queue (one
    killed holds its lock for a while), with RQ's own scheduler code."""
    if redis.exists(RQScheduler.get_locking_key(queue.QUEUE)):
        return
    scheduler = RQScheduler([queue.QUEUE], connection=redis)
    if scheduler.acquire_locks():
        try:
            scheduler.enqueue_scheduled_jobs()
        finally:
            scheduler.release_locks()


def tick_forever(
    settings: WorkerSettings, redis: Redis, every_s: float = 1.0, stop: threading.Event | None = None
) -> None:
    while stop is None or not stop.is_set():
        try:
            tick(settings, redis)
        except Exception:
            log.exception("notification tick failed; trying again")
        time.sleep(every_s)
