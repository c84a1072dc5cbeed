"""Which stored write is an event for which subscription: the topic's trigger, the
subscriber's filters, and what the subscriber may read.

A subscriber is told only about a resource it could read itself: an administrator's
subscription about anything, a tenant's about a resource that carries its tenant label or a
reader label (``careaccess.labels.readable_by``: the same rule the proxy and the store apply to
its reads). Judged on the resource as stored, whose labels the server set.
"""

from __future__ import annotations

from typing import Any

from careaccess.labels import readable_by
from subscriptions.bundles import now
from subscriptions.filters import Filter, all_match
from subscriptions.resource import Spec
from subscriptions.topics import TOPICS


def may_read(spec: Spec, resource: dict[str, Any]) -> bool:
    return not spec.owner or readable_by(resource, spec.owner)


def matches(
    spec: Spec, filters: list[Filter], current: dict[str, Any], previous: dict[str, Any] | None
) -> bool:
    """``spec``'s topic fires for this write, its filters hold and its owner may read the result."""
    topic = TOPICS.get(spec.topic)
    return (
        topic is not None
        and current.get("resourceType") == topic.resource_type
        and topic.trigger(current, previous)
        and all_match(filters, current)
        and may_read(spec, current)
    )


def event_for(spec: Spec, current: dict[str, Any], created: bool) -> dict[str, Any]:
    """The event to record (numbered by ``registry.record``); the resource is kept only for a
    full-resource subscription, as it was when the event happened."""
    event: dict[str, Any] = {
        "timestamp": now(),
        "focus": f"{current['resourceType']}/{current['id']}",
        "version": str((current.get("meta") or {}).get("versionId") or ""),
        "method": "POST" if created else "PUT",
    }
    if spec.content == "full-resource":
        event["resource"] = current
    return event
