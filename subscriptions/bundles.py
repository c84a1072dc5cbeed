"""The Bundles a subscriber receives or asks for, as the Backport IG shapes them in R4.

Every notification (handshake, heartbeat, event-notification) is a ``history`` Bundle whose
first entry is a ``Parameters`` resource with the ``backport-subscription-status-r4`` profile
(the R4 form of R5's SubscriptionStatus); ``$status`` answers a ``searchset`` of one such
Parameters (type ``query-status``), ``$events`` a ``history`` Bundle like a notification (type
``query-event``). Event numbers are strings, as the R4 profile has them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from subscriptions.resource import IG, Spec

STATUS_PROFILE = IG + "backport-subscription-status-r4"
NOTIFICATION_PROFILE = IG + "backport-subscription-notification-r4"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(
    spec: Spec, base: str, kind: str, events_since: int, events: list[dict[str, Any]], content: str
) -> dict[str, Any]:
    """The SubscriptionStatus (R4: Parameters) of ``spec``; ``kind`` is handshake, heartbeat,
    event-notification, query-status or query-event."""
    params: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{spec.id}"}},
        {"name": "topic", "valueCanonical": spec.topic},
        {"name": "status", "valueCode": spec.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since)},
    ]
    for e in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(e["number"])},
            {"name": "timestamp", "valueInstant": e["timestamp"]},
        ]
        if content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{e['focus']}"}})
        params.append({"name": "notification-event", "part": parts})
    if spec.error:
        params.append(
            {
                "name": "error",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/subscription-error",
                            "code": "no-response",
                        }
                    ],
                    "text": spec.error,
                },
            }
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": params,
    }


def notification(
    spec: Spec,
    base: str,
    kind: str,
    events_since: int,
    events: list[dict[str, Any]],
    content: str | None = None,
) -> dict[str, Any]:
    """A ``history`` Bundle: the status first, then (id-only, full-resource) one entry per event's
    focus, with the resource itself for full-resource."""
    content = content or spec.content
    status = status_parameters(spec, base, kind, events_since, events, content)
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": f"{base}/Subscription/{spec.id}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for e in events:
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{e['focus']}",
                "request": {"method": e.get("method", "PUT"), "url": e["focus"]},
                "response": {"status": "201" if e.get("method") == "POST" else "200"},
            }
            if content == "full-resource" and isinstance(e.get("resource"), dict):
                entry["resource"] = e["resource"]
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": now(),
        "entry": entries,
    }


def status_searchset(spec: Spec, base: str, events_since: int) -> dict[str, Any]:
    """The answer of ``$status``: a searchset of one SubscriptionStatus."""
    status = status_parameters(spec, base, "query-status", events_since, [], spec.content)
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"fullUrl": f"urn:uuid:{status['id']}", "resource": status, "search": {"mode": "match"}}],
    }
