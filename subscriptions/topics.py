"""The SubscriptionTopics this deployment offers: the seed's events, as canonical URLs.

R4 has no SubscriptionTopic resource; the Backport IG lets an R4 server name its topics by
canonical URL and list them in its CapabilityStatement (``capabilitystatement-subscriptiontopic-
canonical`` on ``rest.resource`` Subscription), which the plugin does. Each topic is one resource
type and one trigger: a rule on the resource as stored and its previous version (None for a
create), so that "became active" fires once, on the write that made it active, not on every
later update of an active request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASE = "https://fhirplug.org/fhir/SubscriptionTopic/"
Trigger = Callable[[dict[str, Any], "dict[str, Any] | None"], bool]


def _became(status: str) -> Trigger:
    def trigger(current: dict[str, Any], previous: dict[str, Any] | None) -> bool:
        return current.get("status") == status and (previous is None or previous.get("status") != status)

    return trigger


def _status_changed(current: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    return previous is None or previous.get("status") != current.get("status")


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    resource_type: str
    trigger: Trigger
    description: str


TOPICS: dict[str, Topic] = {
    t.url: t
    for t in (
        Topic(
            BASE + "medication-request-active",
            "MedicationRequest became active",
            "MedicationRequest",
            _became("active"),
            "A MedicationRequest is created active, or updated to active from another status",
        ),
        Topic(
            BASE + "medication-dispense-completed",
            "MedicationDispense completed",
            "MedicationDispense",
            _became("completed"),
            "A MedicationDispense is created completed, or updated to completed",
        ),
        Topic(
            BASE + "task-status-changed",
            "Task status changed",
            "Task",
            _status_changed,
            "A Task is created, or updated with another status than before",
        ),
    )
}
# the resource types any topic is about: writes of any other type are never looked at
TOPIC_TYPES = frozenset(t.resource_type for t in TOPICS.values())


def topics_for(resource_type: str) -> list[Topic]:
    return [t for t in TOPICS.values() if t.resource_type == resource_type]
