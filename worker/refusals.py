"""What a message the partner refused for good leaves behind (issue 17, "workflow loose ends").

When a spoke-to-hub message is dead-lettered (the hub answered a final 4xx, or every retry
failed), the spoke's own Task would otherwise stay ``requested`` for ever, and the spoke system
would never learn that nobody will act on it. The worker moves that Task to ``failed`` with the
reason in ``statusReason`` (coded ``refused`` in the hand-off system, the partner's answer in
``text``) and records the refusal as an AuditEvent (subtype ``refused``, outcome 8). Should an
operator replay the dead letter once its cause is fixed and it is delivered, the Task goes back
to ``requested`` (only a Task this module failed, never one failed by anyone else).

Writes go straight to our own store through ``DirectStore`` (fenced, signed), not through the
proxy: routing must not forward this change to the partner that refused the message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import requests

from forwarding.delivery import Delivery, DeliveryKind
from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM, TENANT_SYSTEM
from hubspoke.messages import task_entry
from proxy.direct_store import DirectStore
from proxy.errors import FhirError

log = logging.getLogger("fhirplug.delivery")
REFUSED = {"system": HANDOFF_SYSTEM, "code": "refused", "display": "Refused by the partner"}
WAITING = "requested"  # the only status a refusal moves from: the spoke waits for the hub


def task_path(d: Delivery) -> str | None:
    """Our own Task a spoke-to-hub delivery is about (routing put its id in the message)."""
    if d.kind is not DeliveryKind.SPOKE_TO_HUB or not isinstance(d.body, dict):
        return None
    entry = task_entry(d.body)
    task_id = (entry or {}).get("resource", {}).get("id") if entry else None
    return f"Task/{task_id}" if task_id else None


def _refused_by_us(task: dict) -> bool:
    codings = (task.get("statusReason") or {}).get("coding") or []
    return task.get("status") == "failed" and any(
        c.get("system") == REFUSED["system"] and c.get("code") == REFUSED["code"] for c in codings
    )


def _update(store: DirectStore, path: str, change) -> dict | None:
    """Read, change (``change(task)`` returns False to leave it), write with If-Match; once more
    if someone else wrote in between. The Task as written, or None when left alone."""
    for _ in range(2):
        r = store.get(path, timeout=10)
        if r.status_code != 200:
            return None
        task = r.json()
        if not change(task):
            return None
        version = (task.get("meta") or {}).get("versionId", "")
        w = store.write("PUT", path, task, timeout=10, headers={"If-Match": f'W/"{version}"'})
        if w.status_code < 300:
            return task
        if w.status_code not in (409, 412):
            return None
    return None


def fail_task(store: DirectStore | None, d: Delivery, reason: str, *, own_ods: str) -> bool:
    """The spoke's Task of a refused message to ``failed``, with the reason, and its audit
    record. Best effort: the dead letter stands whether or not this can be written."""
    path = task_path(d)
    if store is None or path is None:
        return False

    def to_failed(task: dict) -> bool:
        if task.get("status") != WAITING:
            return False
        task["status"] = "failed"
        task["statusReason"] = {
            "coding": [REFUSED],
            "text": f"{d.partner} refused the message: {reason[:900]}",
        }
        task["lastModified"] = _now()
        return True

    try:
        task = _update(store, path, to_failed)
        if task is None:
            return False
        store.post("AuditEvent", _audit(d, task, reason, own_ods), timeout=10)
    except (requests.RequestException, FhirError, ValueError):
        log.exception("could not record a refused delivery on its Task")
        return False
    log.warning(
        "the partner refused a message for good: its Task failed",
        extra={"fields": {"event": "task_failed", "delivery": d.id, "task": path, "partner": d.partner}},
    )
    return True


def restore_task(store: DirectStore | None, d: Delivery) -> bool:
    """A replayed message was delivered after all: its Task waits for the hub again."""
    path = task_path(d)
    if store is None or path is None:
        return False

    def to_waiting(task: dict) -> bool:
        if not _refused_by_us(task):
            return False
        task["status"] = WAITING
        task.pop("statusReason", None)
        task["lastModified"] = _now()
        return True

    try:
        return _update(store, path, to_waiting) is not None
    except (requests.RequestException, FhirError, ValueError):
        log.exception("could not put a delivered message's Task back to requested")
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _audit(d: Delivery, task: dict, reason: str, own_ods: str) -> dict:
    tenants = sorted({own_ods, d.partner} - {""})
    return {
        "resourceType": "AuditEvent",
        "meta": {"security": [{"system": TENANT_SYSTEM, "code": c} for c in tenants]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": HANDOFF_SYSTEM, "code": "refused"}],
        "action": "E",
        "recorded": _now(),
        "outcome": "8",  # serious failure: the message will not be acted on
        "outcomeDesc": reason[:1000],
        "agent": [{"who": {"identifier": {"system": ODS_SYSTEM, "value": d.partner}}, "requestor": False}],
        "source": {"observer": {"identifier": {"system": ODS_SYSTEM, "value": own_ods or "unknown"}}},
        "entity": [
            {
                "what": {"reference": f"Task/{task['id']}"},
                "description": f"delivery {d.id}, request {d.request_id}",
            }
        ],
    }
