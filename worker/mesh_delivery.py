"""The RQ job that sends a GP notification over MESH (``deliver``): the delivery kind
``GP_NOTIFICATION``, carried by the same queue, outbox, retry policy, dead letters and metrics as
the HTTP forwarding (worker/delivery.py), but sent by our MESH mailbox.

- the practice's mailbox is looked up by ODS code + workflow id (``gpnotify.mailboxes``, cached in
  Redis); none: a dead letter ("no MESH mailbox"), and the Communication ``stopped`` with that reason;
- the send carries ``localID`` = the ITK message id, and ``MeshTransport.send`` first asks MESH's
  tracking whether that local id already left our mailbox: a retry after a lost answer, or after
  the worker was killed mid-send, finds the first send and sends nothing;
- MESH down, 5xx, 429: retried with the forwarding backoff (``forwarding.policy``); anything MESH
  refuses for good (an unregistered recipient, refused credentials): a dead letter with MESH's
  reason, the Communication ``stopped``;
- accepted: the Communication moves to ``in-progress`` with MESH's message id, the outbox record
  goes, and the delivery is counted (``/metrics``, per practice ODS code).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from redis import Redis
from rq import get_current_job

from forwarding import metrics
from forwarding.delivery import Delivery
from forwarding.policy import (
    PartnerBusy,
    RetryableFailure,
    acquire_slot,
    release_slot,
    wait_until_due,
)
from forwarding.queue import count
from gpnotify import mailboxes, tracking
from gpnotify.mesh import MeshTransport, MeshTransportError, Sent
from gpnotify.sending import Payload
from proxy.config import WorkerSettings
from proxy.direct_store import DirectStore
from proxy.errors import FhirError
from worker.attempts import attempt_failed, dead_letter
from worker.outbox import done

log = logging.getLogger("fhirplug.mesh_delivery")
MESH_SLOT = "MESH"  # sends under way across all workers share one set of slots: our one mailbox


@dataclass
class _Process:
    settings: WorkerSettings | None = None
    redis: Redis | None = None


_process = _Process()


def configure(settings: WorkerSettings, redis: Redis | None = None) -> None:
    """The worker's settings and its jobs' Redis client, once before it takes jobs."""
    _process.settings = settings
    _process.redis = redis if redis is not None else Redis.from_url(settings.redis_url)


def _worker() -> tuple[WorkerSettings, Redis]:
    if _process.settings is None or _process.redis is None:
        configure(WorkerSettings.from_env())  # run by another worker than ``python -m worker``
    assert _process.settings is not None and _process.redis is not None
    return _process.settings, _process.redis


def deliver(job: dict) -> dict:
    """The RQ job. Returns what MESH answered; raises to be retried or dead-lettered."""
    d = Delivery.from_dict(job)
    settings, redis = _worker()
    payload = Payload.of(d.body)
    if not settings.mesh.configured:
        _final(d, "this worker has no MESH mailbox configured (FHIRPLUG_MESH_MAILBOX)")
    lease = acquire_slot(redis, MESH_SLOT, settings.partner_concurrency, d.id, settings.lease_seconds)
    if lease is None:
        raise PartnerBusy(f"{settings.partner_concurrency} MESH sends already under way")
    wait_until_due(get_current_job())
    try:
        with MeshTransport(settings.mesh) as mesh:
            mailbox = _mailbox(d, mesh, redis)
            try:
                sent = mesh.send(
                    mailbox,
                    payload.xml.encode(),
                    workflow_id=d.path,
                    local_id=payload.message_id,
                    subject=payload.event,
                )
            except MeshTransportError as exc:
                if not exc.retryable:
                    mailboxes.forget(redis, d.partner, d.path)  # a cached mailbox may be the cause
                _failed(d, exc)
    finally:
        release_slot(redis, lease, d.id)
    return _accepted(d, payload, mailbox, sent)


def _mailbox(d: Delivery, mesh: MeshTransport, redis: Redis) -> str:
    try:
        found = mailboxes.lookup(redis, d.partner, d.path, mesh.lookup_mailbox)
    except MeshTransportError as exc:
        _failed(d, exc)
    if not found:
        _final(d, f"MESH has no mailbox for GP practice {d.partner} and workflow {d.path}")
    return str(found)


def _accepted(d: Delivery, payload: Payload, mailbox: str, sent: Sent) -> dict:
    settings, redis = _worker()
    latency = time.time() - d.queued_at
    log.info(
        "GP notification accepted by MESH",
        extra={
            "fields": {
                "event": "delivered",
                "delivery": d.id,
                "partner": d.partner,
                "mailbox": mailbox,
                "mesh_message_id": sent.message_id,
                "already_sent": sent.already_sent,
                "latency_s": round(latency, 3),
                "request_id": d.request_id,
            }
        },
    )
    count(metrics.record_delivered, redis, d.partner, latency)
    if settings.store_url:
        with DirectStore(settings.store_url, redis) as store:
            _update(
                store,
                payload.communication,
                lambda c: tracking.sent(c, mesh_message_id=sent.message_id, mailbox=mailbox),
            )
            done(store, d.id)
    return {"mesh_message_id": sent.message_id, "already_sent": sent.already_sent, "latency_s": latency}


def _update(store: DirectStore, reference: str, change, attempts: int = 5) -> None:
    """Move the tracking Communication on, version-checked (the ack side may update it too).
    Best effort: the message has gone whether or not its record can be written."""
    for _ in range(attempts):
        try:
            resp = store.get(reference)
            if resp.status_code != 200:
                log.warning("tracking record %s not found (%s)", reference, resp.status_code)
                return
            current = resp.json()
            changed = change(current)
            if changed is None:
                return
            version = (current.get("meta") or {}).get("versionId")
            request = {"method": "PUT", "url": reference}
            if version:
                request["ifMatch"] = f'W/"{version}"'  # a compare-and-set: 412 if it changed meanwhile
            bundle = {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": changed, "request": request}],
            }
            put = store.write("POST", "", bundle, timeout=10)
            if put.status_code < 300:
                return
            if put.status_code != 412:
                log.warning("tracking record %s not updated (%s)", reference, put.status_code)
                return
        except (requests.RequestException, FhirError, ValueError):
            log.exception("could not update tracking record %s", reference)
            return
    log.warning("tracking record %s kept changing; not updated", reference)


def _failed(d: Delivery, exc: MeshTransportError):
    if exc.retryable:
        _retrying(d)
        raise RetryableFailure(str(exc)) from exc
    _final(d, str(exc))


def _retrying(d: Delivery) -> None:
    """Count the attempt about to fail: a retry while any are left, a dead letter after (then the
    Communication says so)."""
    if not attempt_failed(_worker()[1], d.partner):
        _stop(d, "MESH did not accept the notification before the retries ran out")


def _final(d: Delivery, reason: str):
    """Fail for good: RQ moves the job to the failed registry (the dead letters) with ``reason``."""
    failure = dead_letter(_worker()[1], d.partner, reason, "GP notification")
    _stop(d, reason)
    raise failure


def _stop(d: Delivery, reason: str) -> None:
    settings, redis = _worker()
    if not settings.store_url:
        return
    when = datetime.now(UTC)
    with DirectStore(settings.store_url, redis) as store:
        _update(store, Payload.of(d.body).communication, lambda c: tracking.failed(c, reason, now=when))
