"""The pharmacy's side of the MESH inbox: an ITK3 ack of a notification it sent is parsed, matched
to the tracking Communication by the acked message id and recorded on it with If-Match
(``gpnotify.ack_intake``). A negative ack, an ack that matches no Communication and an unreadable
one become dead letters in the forwarding queue's failed-job registry, where ``fhirplug queue dead``
lists them with their reason; ``fhirplug queue replay`` dismisses one."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from redis import Redis
from rq import Queue
from rq.job import Job

from forwarding.delivery import QUEUE
from gpnotify.ack_intake import apply_ack, search_params
from gpnotify.acks import parse_ack
from gpnotify.mesh import Received
from proxy.direct_store import DirectStore
from worker.inbox_outcome import StoreFailed, Taken

log = logging.getLogger("fhirplug.mesh_inbox")
DEAD_LETTER_TTL = 30 * 24 * 3600  # as long as a delivery's dead letter is kept


def take_ack(store: DirectStore, redis: Redis, received: Received) -> Taken:
    """Record one received ack on its Communication (or make it a dead letter)."""
    from gpnotify.serialise import from_xml

    try:
        ack = parse_ack(from_xml(received.body))
    except Exception as exc:  # AckError, or XML that does not even read: equally unmatchable
        reason = f"unreadable ITK3 ack: {exc}"[:300]
        dead_letter(redis, f"mesh-{received.message_id}", received.sender, "GP notification ack", reason)
        return Taken(received.message_id, "dead-letter", reason)
    for _ in range(3):  # If-Match: a concurrent change is re-read and applied again
        found = store.get("Communication", params=search_params(ack))
        if found.status_code != 200:
            raise StoreFailed(f"store search: {found.status_code}")
        matches = [e["resource"] for e in found.json().get("entry") or []]
        if len(matches) != 1:
            reason = f"{ack.kind} for {ack.acked_message_id}: {len(matches)} notifications match"
            dead_letter(
                redis, f"ack-{ack.message_id}", received.sender, f"GP notification {ack.kind}", reason
            )
            return Taken(received.message_id, "dead-letter", reason)
        intake = apply_ack(matches[0], ack)
        if intake.communication is None:
            return Taken(received.message_id, "ack-duplicate", ack.acked_message_id)
        version = (matches[0].get("meta") or {}).get("versionId")
        comm = intake.communication
        r = store.write("PUT", f"Communication/{comm['id']}", comm, headers={"If-Match": f'W/"{version}"'})
        if r.status_code == 412:
            continue
        if r.status_code >= 300:
            raise StoreFailed(f"Communication update: {r.status_code} {r.text[:300]}")
        if intake.dead_letter:
            reason = f"negative {ack.kind} {ack.code}: {ack.reason or ''}".strip()
            partner = ack.sender_ods or received.sender
            dead_letter(redis, f"ack-{ack.message_id}", partner, f"GP notification {ack.kind}", reason)
            return Taken(received.message_id, "dead-letter", reason)
        return Taken(received.message_id, "ack-recorded", f"{ack.kind} {ack.acked_message_id}")
    raise StoreFailed("Communication kept changing under the ack")


def dead_letter(redis: Redis, job_id: str, partner: str, what: str, reason: str) -> None:
    """A dead letter in the forwarding queue's failed-job registry, once per ``job_id``: the place
    operators already watch (``fhirplug queue dead``), shown as "<what> to <partner>" with ``reason``."""
    queue = Queue(QUEUE, connection=redis)
    job = Job.create(
        "worker.mesh_acks.dismiss",
        args=({"partner": partner, "what": what, "reason": reason},),
        connection=redis,
        id=job_id,
        description=f"{what} to {partner}",
        meta={"dead_letter_reason": reason},
        failure_ttl=DEAD_LETTER_TTL,
        origin=QUEUE,
    )
    job.ended_at = datetime.now(UTC)
    job.save()
    queue.failed_job_registry.add(job, ttl=DEAD_LETTER_TTL, exc_string=reason)
    log.error("dead letter", extra={"fields": {"job": job_id, "partner": partner, "reason": reason}})


def dismiss(letter: dict) -> None:
    """What ``fhirplug queue replay`` of an ack's dead letter does: nothing more than take it out
    of the dead letters (an operator has seen it; the Communication already records the ack)."""
    log.info(
        "dead letter dismissed",
        extra={"fields": {"what": letter.get("what"), "partner": letter.get("partner")}},
    )
