"""The GP notification repair sweep: a notifiable write whose trigger never recorded its intent
(the proxy died between the store's answer and the records' transaction) is notified all the same.

The trigger on store (plugins/gp_notify.py) writes the outbox record and the tracking
Communication right after the pharmacy's write is stored. A process killed in between leaves a
stored, notifiable resource with no record of the intent to notify. Every worker runs this sweep
beside the outbox sweep (a Redis lock lets one run at a time): it looks at the notifiable resources
written in the last ``WINDOW_S`` (older than ``GRACE_S``, so a request still recording is left
alone), and for each whose notification has no Communication yet, builds it, records it and queues
it exactly as the trigger would (the same ids: a trigger that did record meanwhile is found again,
not doubled).

Reads go through ``DirectStore`` (admin); what the notification may carry is narrowed to what the
pharmacy itself may read (resources labelled for it, or for nobody), as the trigger reads as the
pharmacy. A resource labelled for more than one tenant, or none, was not a pharmacy's own write and
is not notified (the trigger only acts on a tenant's writes). A notification that cannot be built
(no practice, no mailbox) is remembered for the window, so it is not rebuilt at every sweep.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from redis import Redis

from gpnotify import gather, mailboxes, sending, tracking
from gpnotify.itk import Sender
from gpnotify.mesh import MeshTransport, MeshTransportError
from hubspoke.identifiers import TENANT_SYSTEM
from proxy.config import WorkerSettings
from proxy.direct_store import DirectStore
from proxy.errors import FhirError

log = logging.getLogger("fhirplug.gp_repair")
LOCK = "fhirplug:gp-repair:sweep"
REFUSED = "fhirplug:gp-repair:refused:"  # + Type/id/_history/version: not buildable, for the window
GRACE_S = 30
WINDOW_S = 15 * 60
# the store searches that find notifiable writes (the rule's filters the store can apply)
SEARCHES = {
    "Immunization": [("status", "completed")],
    "MedicationDispense": [("status", "completed"), ("type", "http://snomed.info/sct|1218611000000102")],
    "Encounter": [("status", "finished")],
}


def tenants_of(resource: dict) -> set[str]:
    return {
        str(s.get("code"))
        for s in (resource.get("meta") or {}).get("security") or []
        if s.get("system") == TENANT_SYSTEM and s.get("code")
    }


class _AsTenant:
    """The store as ``ods`` may read it, for ``gather``: another tenant's resources are not there."""

    def __init__(self, store: DirectStore, ods: str):
        self.store, self.ods = store, ods

    def _mine(self, resource: dict | None) -> bool:
        labels = tenants_of(resource or {})
        return resource is not None and (not labels or self.ods in labels)

    def read(self, resource_type: str, resource_id: str) -> dict | None:
        resp = self.store.get(f"{resource_type}/{resource_id}")
        found = resp.json() if resp.status_code == 200 else None
        return found if self._mine(found) else None

    def search(self, resource_type: str, query, count: int = 200) -> list[dict]:
        resp = self.store.get(resource_type, params=[*query, ("_count", str(count))], timeout=30)
        if resp.status_code != 200:
            return []
        found = [e.get("resource") for e in resp.json().get("entry") or []]
        return [r for r in found if r and self._mine(r)]


def _recent(store: DirectStore, now: datetime) -> list[dict]:
    since = (now - timedelta(seconds=WINDOW_S)).isoformat(timespec="seconds").replace("+00:00", "Z")
    until = (now - timedelta(seconds=GRACE_S)).isoformat(timespec="seconds").replace("+00:00", "Z")
    out = []
    for rtype, filters in SEARCHES.items():
        params = [*filters, ("_lastUpdated", f"ge{since}"), ("_lastUpdated", f"lt{until}"), ("_count", "200")]
        resp = store.get(rtype, params=params, timeout=30)
        resp.raise_for_status()
        out += [e["resource"] for e in resp.json().get("entry") or [] if e.get("resource")]
    return out


def repair(store: DirectStore, redis: Redis, settings: WorkerSettings, now: datetime | None = None) -> int:
    """Record and queue every recent notifiable write that has no tracking record; how many."""
    if not redis.set(LOCK, b"1", nx=True, ex=120):
        return 0  # another worker is on it
    repaired = 0
    try:
        for resource in _recent(store, now or datetime.now(UTC)):
            labels = tenants_of(resource)
            if len(labels) != 1 or gather.kind_of(resource) is None:
                continue
            if _repair_one(store, redis, settings, resource, labels.pop()):
                repaired += 1
    finally:
        redis.delete(LOCK)
    return repaired


def _version_key(resource: dict) -> str:
    version = (resource.get("meta") or {}).get("versionId") or "1"
    return f"{REFUSED}{resource['resourceType']}/{resource['id']}/_history/{version}"


def _repair_one(store: DirectStore, redis: Redis, settings: WorkerSettings, resource: dict, ods: str) -> bool:
    if redis.exists(_version_key(resource)):
        return False
    try:
        n = gather.build(_AsTenant(store, ods), resource, Sender(ods, settings.mesh.mailbox))
    except FhirError as exc:
        redis.set(_version_key(resource), str(exc)[:500].encode(), ex=WINDOW_S)
        return False
    comm = f"Communication/{tracking.communication_id(n.message.message_id)}"
    if store.get(comm).status_code == 200:
        return False  # the trigger (or an earlier sweep) recorded it
    m = n.message

    def ask_mesh(ods_code: str, workflow_id: str) -> str | None:
        with MeshTransport(settings.mesh) as mesh:
            return mesh.lookup_mailbox(ods_code, workflow_id)

    try:
        if mailboxes.lookup(redis, m.receiver_ods, m.workflow_id, ask_mesh) is None:
            redis.set(_version_key(resource), b"no mailbox", ex=WINDOW_S)
            return False
    except MeshTransportError:
        pass  # MESH away: the job looks again, with retries
    delivery = sending.delivery_for(n, ods)
    resp = store.write("POST", "", sending.records(n, delivery, ods), timeout=30)
    if resp.status_code >= 300:
        log.warning("could not record a missed GP notification (%s); next sweep", resp.status_code)
        return False
    sending.queue_once(delivery, redis)
    fields = {"event": "gp_notification_repaired", "message_id": m.message_id, "resource": n.about}
    log.info("missed GP notification recorded and queued", extra={"fields": fields})
    return True


def repair_forever(
    settings: WorkerSettings, redis: Redis, every_s: float = 15.0, stop: threading.Event | None = None
) -> None:
    store = DirectStore(settings.store_url, redis)
    while stop is None or not stop.is_set():
        try:
            repair(store, redis, settings)
        except Exception:  # a sweep that fails tries again next time; it must not end the thread
            log.exception("GP notification repair sweep failed; trying again")
        time.sleep(every_s)
