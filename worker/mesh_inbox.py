"""The MESH inbox loop: a GP practice takes in Digital Medicine notifications, a pharmacy takes in
the ITK3 acks of what it sent (``FHIRPLUG_MESH_ROLE`` = gp, pharmacy or both).

A notification, in this order, so nothing is lost and nothing is done twice:

1. read and checked (``gpnotify.inbound``); a message that breaks a rule is quarantined instead;
2. stored (``gpnotify.gp_records``): unless a DocumentReference with its ITK message id is already
   there (a redelivery, or a crash after step 2): nothing new is stored;
3. the InfAck sent, when asked for, to the MESH mailbox the message came from (MESH's ``From``, not
   what the message says of itself); its localID is derived from the acked message, so a resend
   after a crash is found by MESH tracking and never goes twice;
4. only then the MESH message acknowledged: a crash before it means MESH redelivers, and steps 2 and
   3 find their work done. (The InfAck goes before the MESH acknowledgement, not after: after, a
   crash between the two would lose the InfAck for good.)

A send that MESH refuses for good (an unknown mailbox) does not hold the message: it is logged and
the message acknowledged; an outage leaves it in the inbox for the next poll. One message failing
never stops the others behind it.

BusAcks: each poll also sends the BusAck of every notification the practice has filed since
(``docStatus`` final: "the practice has filed it") or refused (``status`` entered-in-error: 30002,
patient not known here), then tags the DocumentReference ``busack-sent``. The filed
DocumentReference is itself the durable intent (no separate outbox record); the ack's stable
localID covers a crash between sending and tagging.

Acks, at the pharmacy, are ``worker.mesh_acks``'s: recorded on the tracking Communication, a
negative or unmatchable one raised to the dead letters.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import requests
from redis import Redis

from gpnotify import KINDS
from gpnotify.acks import (
    MESSAGE_DEFINITION_ERROR,
    PATIENT_KNOWN,
    PATIENT_NOT_KNOWN,
    SUCCESS,
    AckKind,
    AckMessage,
    ResponseCode,
    build_ack,
)
from gpnotify.gp_records import (
    notification_fields,
    notification_transaction,
    quarantine_transaction,
    search_by_message,
)
from gpnotify.inbound import Rejected, read_notification
from gpnotify.itk import Sender
from gpnotify.mesh import MeshTransport, MeshTransportError, Received
from gpnotify.tracking import NOTIFICATION_SYSTEM
from proxy.config import MeshSettings
from proxy.direct_store import DirectStore
from worker import mesh_acks
from worker.inbox_outcome import StoreFailed, Taken

log = logging.getLogger("fhirplug.mesh_inbox")
NOTIFICATION_WORKFLOWS = {k.workflow_id: k for k in KINDS}
ACK_WORKFLOWS = {k.ack_workflow_id: k for k in KINDS}
BUSACK_TAG = {"system": "https://fhirplug.org/fhir/CodeSystem/gp-notification-state", "code": "busack-sent"}
POLL_LOCK = "fhirplug:mesh-inbox-lock"


class Inbox:
    """One deployment's inbox: its mailbox session, store, ODS code, role and Redis."""

    def __init__(self, mesh: MeshTransport, store: DirectStore, own_ods: str, role: str, redis: Redis):
        self.mesh, self.store, self.own_ods, self.role, self.redis = mesh, store, own_ods.upper(), role, redis
        self.me = Sender(self.own_ods, mesh.mailbox)

    @property
    def takes_notifications(self) -> bool:
        return self.role in ("gp", "both")

    @property
    def takes_acks(self) -> bool:
        return self.role in ("pharmacy", "both")

    def poll(self) -> list[Taken]:
        """Every waiting message taken in once; then the BusAcks of what was filed since."""
        taken = []
        for mesh_id in self.mesh.inbox():
            try:
                taken.append(self.take(mesh_id))
            except (MeshTransportError, StoreFailed, requests.RequestException) as exc:
                log.warning(
                    "inbox message left for the next poll: %s", exc, extra={"fields": {"mesh": mesh_id}}
                )
                taken.append(Taken(mesh_id, "left", str(exc)))
        if self.takes_notifications:
            try:
                self.send_business_acks()
            except (MeshTransportError, requests.RequestException) as exc:
                log.warning("BusAcks left for the next poll: %s", exc)  # the filed documents wait
        return taken

    def take(self, mesh_id: str) -> Taken:
        received = self.mesh.receive(mesh_id)
        if received.workflow_id in ACK_WORKFLOWS and self.takes_acks:
            taken = mesh_acks.take_ack(self.store, self.redis, received)
        elif received.workflow_id in NOTIFICATION_WORKFLOWS and self.takes_notifications:
            taken = self._notification(received)
        else:
            taken = self._unexpected(received)
        self.mesh.acknowledge(mesh_id)
        log.info("inbox message taken", extra={"fields": {"mesh": mesh_id, "outcome": taken.outcome}})
        return taken

    # ---- the practice ------------------------------------------------------------------------

    def _notification(self, received: Received) -> Taken:
        try:
            note = read_notification(received.body, self.own_ods)
        except Rejected as problem:
            return self._quarantine(received, problem)
        found = self.store.get(
            "DocumentReference", params={**search_by_message(note.message_id), "_summary": "count"}
        )
        if found.status_code != 200:
            raise StoreFailed(f"store search: {found.status_code}")
        duplicate = bool(found.json().get("total"))
        if not duplicate:
            # acks go to the mailbox MESH says it came from, not the one the message claims
            tx = notification_transaction(
                note, received.body, received.message_id, received.workflow_id, self.own_ods, received.sender
            )
            r = self.store.post("", tx, timeout=60)
            if r.status_code >= 300:
                raise StoreFailed(f"store transaction: {r.status_code} {r.text[:300]}")
        if note.inf_ack_requested:
            ack = build_ack(
                AckKind.INF,
                note.message_id,
                SUCCESS,
                sender=self.me,
                receiver_ods=note.sender_ods,
                workflow_id=received.workflow_id,
            )
            self._send(received.sender, ack)
        return Taken(received.message_id, "duplicate" if duplicate else "stored", note.message_id)

    def _quarantine(self, received: Received, problem: Rejected) -> Taken:
        tx = quarantine_transaction(
            received.body,
            received.message_id,
            problem.response,
            problem.reason,
            self.own_ods,
            message_id=problem.message_id,
            sender_ods=problem.sender_ods,
            workflow_id=received.workflow_id,
        )
        r = self.store.post("", tx, timeout=60)
        if r.status_code >= 300:
            raise StoreFailed(f"store quarantine: {r.status_code} {r.text[:300]}")
        if problem.inf_ack_requested:
            # ITK3: an unreadable message is answered under the id MESH knows it by
            acked = problem.message_id or received.local_id or received.message_id
            ack = build_ack(
                AckKind.INF,
                acked,
                problem.response,
                sender=self.me,
                receiver_ods=problem.sender_ods,
                workflow_id=received.workflow_id,
                reason=problem.reason,
            )
            self._send(received.sender, ack)
        log.warning(
            "inbox message quarantined",
            extra={
                "fields": {
                    "mesh": received.message_id,
                    "code": problem.response.code,
                    "reason": problem.reason,
                }
            },
        )
        return Taken(received.message_id, "quarantined", f"{problem.response.code} {problem.reason}")

    def _unexpected(self, received: Received) -> Taken:
        """A workflow this deployment does not take: kept (quarantine at a practice, a dead letter
        at a pharmacy) and acknowledged, so it never blocks the inbox."""
        reason = f"workflow {received.workflow_id!r} is not taken by a {self.role or 'no-role'} deployment"
        if self.takes_notifications:
            problem = Rejected(MESSAGE_DEFINITION_ERROR, reason, inf_ack_requested=False)
            return self._quarantine(received, problem)
        mesh_acks.dead_letter(
            self.redis, f"mesh-{received.message_id}", received.sender, "unexpected MESH message", reason
        )
        return Taken(received.message_id, "dead-letter", reason)

    def _send(self, mailbox: str, ack: AckMessage) -> None:
        try:
            self.mesh.send(
                mailbox, ack.xml(), workflow_id=ack.workflow_id, local_id=ack.message_id, subject="ITK008M"
            )
        except MeshTransportError as exc:
            if exc.retryable:
                raise
            # nobody can take it (an unknown mailbox): holding the inbox message would not help
            log.error("ack not sendable, dropped: %s", exc, extra={"fields": {"ack": ack.message_id}})

    def send_business_acks(self) -> int:
        """The BusAck of each notification filed (or refused) since the last poll; how many went."""
        sent = 0
        for status, response in (("final", PATIENT_KNOWN), ("entered-in-error", PATIENT_NOT_KNOWN)):
            params = {
                "identifier": f"{NOTIFICATION_SYSTEM}|",
                "_tag:not": f"{BUSACK_TAG['system']}|{BUSACK_TAG['code']}",
                "_count": "50",
            }
            params["doc-status" if status == "final" else "status"] = status
            r = self.store.get("DocumentReference", params=params)
            if r.status_code != 200:
                log.warning("BusAck search failed: %s %s", r.status_code, r.text[:500])
                continue
            for entry in r.json().get("entry") or []:
                doc = entry.get("resource") or {}
                if self._business_ack(doc, response):
                    sent += 1
        return sent

    def _business_ack(self, doc: dict, response: ResponseCode) -> bool:
        fields = notification_fields(doc)
        if fields.get("busAckRequested") and fields.get("messageId") and fields.get("senderMailbox"):
            ack = build_ack(
                AckKind.BUS,
                str(fields["messageId"]),
                response,
                sender=self.me,
                receiver_ods=fields.get("senderOds"),
                workflow_id=str(fields.get("workflow") or ""),
                reason=None if response.ok else "the practice did not file it: patient not known here",
            )
            try:
                self._send(str(fields["senderMailbox"]), ack)
            except MeshTransportError as exc:
                log.warning("BusAck left for the next poll: %s", exc)
                return False
        doc.setdefault("meta", {}).setdefault("tag", []).append(BUSACK_TAG)
        version = (doc.get("meta") or {}).get("versionId")
        headers = {"If-Match": f'W/"{version}"'} if version else {}
        r = self.store.write("PUT", f"DocumentReference/{doc['id']}", doc, headers=headers)
        if r.status_code >= 300:  # the practice changed it meanwhile: the next poll sees it again
            log.warning("BusAck sent, tag not written (%s); MESH tracking keeps it single", r.status_code)
        return True


def poll_once(settings: MeshSettings, store: DirectStore, own_ods: str, redis: Redis) -> list[Taken]:
    """One poll, unless another worker is polling this mailbox right now (a Redis lock)."""
    lock = redis.lock(POLL_LOCK + ":" + settings.mailbox, timeout=max(120.0, settings.timeout_s * 4))
    if not lock.acquire(blocking=False):
        return []
    try:
        with MeshTransport(settings) as mesh:
            return Inbox(mesh, store, own_ods, settings.role, redis).poll()
    finally:
        with contextlib.suppress(Exception):  # expired while polling: the next poll takes it afresh
            lock.release()


def poll_forever(
    settings: MeshSettings, store_url: str, own_ods: str, redis: Redis, stop: threading.Event | None = None
) -> None:
    store = DirectStore(store_url, redis)
    while stop is None or not stop.is_set():
        try:
            poll_once(settings, store, own_ods, redis)
        except Exception:
            log.exception("MESH inbox poll failed; trying again")
        time.sleep(settings.poll_seconds)


def main() -> None:
    """``python -m worker.mesh_inbox``: the inbox loop alone, for a deployment that runs it apart
    from its RQ workers (``python -m worker`` also runs it, in a thread, when a role is set)."""
    from proxy.config import WorkerSettings
    from proxy.logs import configure_logging

    configure_logging()
    settings = WorkerSettings.from_env()
    if not (settings.store_url and settings.mesh.role and settings.mesh.configured):
        raise SystemExit(
            "the MESH inbox needs FHIRPLUG_STORE_URL, FHIRPLUG_MESH_ROLE and a configured mailbox "
            "(FHIRPLUG_MESH_MAILBOX, _PASSWORD, _SHARED_KEY)"
        )
    redis = Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
    poll_forever(settings.mesh, settings.store_url, settings.own_ods, redis)


if __name__ == "__main__":
    main()
