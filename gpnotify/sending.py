"""Putting a built notification on its way: the delivery the forwarding machinery carries (kind
``GP_NOTIFICATION``, sent by MESH instead of HTTP), the store transaction that records the intent
(the outbox record and the tracking Communication, both or neither), and queueing it once.

Ids are all derived from the ITK message id (stable per stored resource version), so a second
trigger of the same version — a resent transaction, ``$notify-gp`` after the automatic trigger —
writes the same records and finds the same job instead of making a second notification.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from forwarding import outbox
from forwarding.delivery import Delivery, DeliveryKind
from forwarding.queue import enqueue
from gpnotify.gather import Notification
from gpnotify.mesh import XML
from gpnotify.tracking import communication, communication_id
from hubspoke.identifiers import TENANT_SYSTEM

ON_ITS_WAY = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


@dataclass(frozen=True)
class Payload:
    """What the MESH job needs, as the delivery's ``body`` carries it."""

    message_id: str  # the MESH localID
    event: str  # ITK009D …: the MESH subject
    xml: str
    communication: str  # Communication/<id>: the tracking record to move on
    sender: str  # the pharmacy's ODS code

    @classmethod
    def of(cls, body: Any) -> Payload:
        return cls(**{k: body[k] for k in ("message_id", "event", "xml", "communication", "sender")})


def delivery_id(message_id: str) -> str:
    return uuid.UUID(message_id).hex


def delivery_for(n: Notification, pharmacy_ods: str, request_id: str | None = None) -> Delivery:
    """The delivery of ``n``: partner = the practice's ODS code (how ``fhirplug queue`` and
    ``/metrics`` group it), path = the MESH workflow id."""
    m = n.message
    payload = Payload(
        message_id=m.message_id,
        event=m.kind.event,
        xml=m.xml().decode(),
        communication=f"Communication/{communication_id(m.message_id)}",
        sender=pharmacy_ods,
    )
    return Delivery(
        partner=m.receiver_ods,
        method="MESH",
        path=m.workflow_id,
        body=payload.__dict__,
        content_type=XML,
        request_id=request_id,
        kind=DeliveryKind.GP_NOTIFICATION,
        id=delivery_id(m.message_id),
    )


def records(
    n: Notification, delivery: Delivery, pharmacy_ods: str, *, with_communication: bool = True
) -> dict:
    """The transaction that records the intent to send: the outbox record (its subject the tracking
    Communication) and, unless it already exists, the Communication (``preparation``)."""
    comm = communication(
        n.message, about=n.about, patient=n.patient, encounter=n.encounter, pharmacy_ods=pharmacy_ods
    )
    basic = outbox.record(delivery, f"Communication/{comm['id']}")
    basic["meta"] = {"security": [{"system": TENANT_SYSTEM, "code": pharmacy_ods}]}
    entries = [{"resource": basic, "request": {"method": "PUT", "url": f"Basic/{basic['id']}"}}]
    if with_communication:
        entries.insert(
            0, {"resource": comm, "request": {"method": "PUT", "url": f"Communication/{comm['id']}"}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def job_status(redis: Redis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=redis).get_status()
    except NoSuchJobError:
        return None


def queue_once(delivery: Delivery, redis: Redis) -> str:
    """Queue ``delivery`` unless its job is already on its way or done. Returns ``queued``,
    ``already-queued`` or ``already-sent``. A dead letter is queued afresh (a re-send)."""
    status = job_status(redis, delivery.id)
    if status in ON_ITS_WAY:
        return "already-queued"
    if status == JobStatus.FINISHED:
        return "already-sent"
    if status is not None:  # failed, stopped, canceled: start again with the full retry policy
        Job.fetch(delivery.id, connection=redis).delete()
    enqueue(delivery, redis)
    return "queued"
