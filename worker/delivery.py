"""The RQ job that delivers a forwarded message to a partner (``deliver``), and its record.

The delivery (forwarding/delivery.py) is sent with our signed-JWT client for that partner; a 401
gets one new token (in ``PartnerTokenClient``); timeouts, connection errors, 429 and 5xx are
retried (forwarding/policy.py); any other answer is final: the job fails without further retries
and stays in RQ's failed-job registry (the dead letters), with the partner's OperationOutcome
kept as the reason. Deliveries carry the request id across the hop and an ``X-Delivery-ID``; the
partner's own intake makes a repeated message a no-op. A delivered message is recorded as an
AuditEvent in our store and its outbox record removed, both through ``DirectStore`` (fenced).

The jobs' settings and Redis client are the worker's own, handed over once at its start
(``configure``, by ``python -m worker``); a job reads no environment of its own.
"""

from __future__ import annotations

import json
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
    holding,
    retry_after_of,
    wait_for_slot,
    wait_until_due,
)
from forwarding.policy import stop_retrying_if_final as stop_retrying_if_final  # jobs queued before it moved
from forwarding.queue import count
from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM, TENANT_SYSTEM
from proxy.auth.outbound import PartnerCredentials, PartnerTokenClient, TokenRequestError
from proxy.config import WorkerSettings
from proxy.direct_store import DirectStore
from proxy.errors import FhirError
from proxy.partners import PartnerDirectory
from worker.attempts import attempt_failed, dead_letter
from worker.outbox import done
from worker.refusals import fail_task, restore_task

log = logging.getLogger("fhirplug.delivery")


@dataclass
class _Process:
    settings: WorkerSettings | None = None
    redis: Redis | None = None  # the jobs' one client (a forked job's pool reconnects by itself)
    store: DirectStore | None = None  # made at the first delivery that needs it


_process = _Process()


def configure(settings: WorkerSettings, redis: Redis | None = None) -> None:
    """The worker's settings, and its jobs' Redis client (built from them unless given), once
    before the worker takes jobs."""
    _process.settings = settings
    _process.redis = redis if redis is not None else Redis.from_url(settings.redis_url)
    _process.store = None


def _worker() -> tuple[WorkerSettings, Redis]:
    if _process.settings is None or _process.redis is None:
        # a job run by another worker than ``python -m worker`` (RQ's own, a test's SimpleWorker):
        # the same settings, read the same way, once
        configure(WorkerSettings.from_env())
    assert _process.settings is not None and _process.redis is not None
    return _process.settings, _process.redis


_clients: dict[str, PartnerTokenClient] = {}


def _client(partner) -> PartnerTokenClient:
    """The partner's client: its token shared through Redis by every worker process (a forked
    job's own cache would die with it, and each delivery would cost a token request), its HTTP
    connections pooled for as long as the process lives."""
    key = f"{partner.ods}|{partner.client_id}|{partner.token_url}|{partner.key_file}"
    if key not in _clients:
        creds = PartnerCredentials(partner.token_url, partner.client_id, partner.private_jwk(), partner.scope)
        _clients[key] = PartnerTokenClient(creds, timeout=15.0, redis=_worker()[1])
    return _clients[key]


def deliver(job: dict) -> dict:
    """The RQ job. Returns what the partner answered; raises to be retried or dead-lettered."""
    d = Delivery.from_dict(job)
    settings, redis = _worker()
    partner = PartnerDirectory(redis).get(d.partner)
    if partner is None:
        _final(f"no partner {d.partner} in the directory", d)
    limit = settings.partner_concurrency
    lease = wait_for_slot(redis, d.partner, limit, d.id, settings.lease_seconds)
    if lease is None:
        raise PartnerBusy(f"{limit} deliveries to {d.partner} already under way")
    with holding(redis, lease, d.id, settings.lease_seconds):
        wait_until_due(get_current_job())
        return _send(d, partner)


def _send(d: Delivery, partner) -> dict:
    url = partner.base_url + ("/" + d.path if d.path else "")
    headers = {"Content-Type": d.content_type, "Accept": "application/fhir+json", "X-Delivery-ID": d.id}
    if d.request_id:
        headers["X-Request-ID"] = d.request_id
    try:
        resp = _client(partner).request(d.method, url, headers=headers, data=json.dumps(d.body))
    except TokenRequestError as exc:
        if exc.retryable:
            _retrying(d, str(exc))
            raise RetryableFailure(str(exc)) from exc
        _final(f"the partner's token endpoint refused us: {exc}", d)
    except requests.RequestException as exc:
        _retrying(d, f"{type(exc).__name__}: {exc}")
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
        settings, redis = _worker()
        store = _store()
        record_delivery(d, partner, store, own_ods=settings.own_ods)
        count(metrics.record_delivered, redis, d.partner, latency)
        if store is not None and _replayed():
            restore_task(store, d)  # a dead letter replayed after its cause was fixed
        if store is not None:
            done(store, d.id)  # the outbox record has served its purpose
        return {"status": resp.status_code, "latency_s": latency}
    busy = resp.status_code == 409 and resp.headers.get("Retry-After")  # an earlier copy still in hand
    if resp.status_code in (408, 429) or resp.status_code >= 500 or busy:
        _retrying(d, f"{resp.status_code}: {resp.text[:500]}")
        raise RetryableFailure(f"{resp.status_code}: {resp.text[:500]}", retry_after_of(resp))
    _final(f"{resp.status_code}: {resp.text[:2000]}", d)
    raise AssertionError("unreachable")


def _retrying(d: Delivery, reason: str) -> None:
    """Count the attempt that is about to fail: a retry while any are left, a dead letter after
    (whose message's Task then fails, as after a final refusal)."""
    if not attempt_failed(_worker()[1], d.partner):
        _refused(d, f"no answer after every retry; last: {reason}")


def _final(reason: str, d: Delivery | None = None):
    """Fail for good: no retries left, so RQ moves the job to the failed registry (dead letters)."""
    job = get_current_job()
    partner = (job.args[0] if job is not None and job.args else {}).get("partner", "?")
    exc = dead_letter(_worker()[1], partner, reason)
    if d is not None:
        _refused(d, reason)
    raise exc


def _refused(d: Delivery, reason: str) -> None:
    fail_task(_store(), d, reason, own_ods=_worker()[0].own_ods)


def _store() -> DirectStore | None:
    """The process's client of our own store (its connections pooled across deliveries), or
    None when the worker has no store."""
    settings, redis = _worker()
    if not settings.store_url:
        return None
    if _process.store is None:
        _process.store = DirectStore(settings.store_url, redis)
    return _process.store


def _replayed() -> bool:
    """Was this job a dead letter once (``fhirplug queue replay`` counts its replays in meta)?"""
    job = get_current_job()
    return job is not None and bool(job.meta.get("replays"))


def record_delivery(d: Delivery, partner, store: DirectStore | None, *, own_ods: str) -> None:
    """The "delivered to partner" hand-off, as an AuditEvent in our own store (best effort: the
    delivery has happened whether or not its record can be written), observed by ``own_ods``
    (this deployment). Fenced like every write past the proxy, so a cached AuditEvent search
    sees it at once."""
    if store is None:
        return
    what = {"reference": d.path} if d.path.startswith("Task/") else {"display": d.label}
    name = None
    if d.task_key and "|" in d.task_key:
        system, name = d.task_key.split("|", 1)
        what = {"identifier": {"system": system, "value": name}, "display": d.label}
    event = {
        "resourceType": "AuditEvent",
        "meta": {
            "security": [{"system": TENANT_SYSTEM, "code": c} for c in sorted({own_ods, d.partner} - {""})]
        },
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
        "source": {"observer": {"identifier": {"system": ODS_SYSTEM, "value": own_ods or "unknown"}}},
        "entity": [{"what": what, "description": f"delivery {d.id}, request {d.request_id}"}],
    }
    if name:
        event["entity"][0]["name"] = name  # the Task's shared identifier: AuditEvent?entity-name=
    try:
        store.post("AuditEvent", event, timeout=10)
    except (requests.RequestException, FhirError):
        log.exception("could not record the delivery's audit event")
