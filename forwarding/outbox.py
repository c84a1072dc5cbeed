"""The outbox record format: a delivery kept in the store as a ``Basic`` resource (its id the
delivery id, the whole delivery in an extension), so that no crash can lose an intent to forward.
How records are written, swept and removed is the worker's (worker/outbox.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from forwarding.delivery import Delivery

OUTBOX_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/outbox"
DELIVERY_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/outbox-delivery"
EXPECTED_VERSION_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/outbox-expected-version"
SEARCH = {"code": f"{OUTBOX_SYSTEM}|delivery"}  # the store search that finds every record


def record(delivery: Delivery, subject: str, expected_version: str | None = None) -> dict:
    """The outbox record of a delivery; ``subject`` is the Task (its id, or its fullUrl in a bundle)."""
    basic: dict[str, Any] = {
        "resourceType": "Basic",
        "id": delivery.id,
        "code": {"coding": [{"system": OUTBOX_SYSTEM, "code": "delivery"}]},
        "subject": {"reference": subject},
        "created": datetime.now(UTC).date().isoformat(),
        "extension": [{"url": DELIVERY_EXTENSION, "valueString": json.dumps(delivery.to_dict())}],
    }
    if expected_version:
        basic["extension"].append({"url": EXPECTED_VERSION_EXTENSION, "valueString": expected_version})
    return basic


def delivery_of(basic: dict) -> Delivery:
    ext = {e["url"]: e.get("valueString") for e in basic.get("extension") or []}
    d = Delivery.from_dict(json.loads(ext[DELIVERY_EXTENSION]))
    subject = subject_of(basic)
    if d.method == "POST" and isinstance(d.body, dict) and subject.startswith("Task/"):
        # a spoke-to-hub message tells the hub our Task's id, known once it was stored
        for e in d.body.get("entry") or []:
            if (e.get("resource") or {}).get("resourceType") == "Task":
                e["resource"]["id"] = subject.split("/")[1]
    return d


def subject_of(basic: dict) -> str:
    """The reference of what the record announces a change of ("Task/123")."""
    return str((basic.get("subject") or {}).get("reference", ""))


def expected_version_of(basic: dict) -> str | None:
    """For a Task change: the Task version the change will make (None: written in the same
    transaction as what it announces)."""
    ext = {e["url"]: e.get("valueString") for e in basic.get("extension") or []}
    return ext.get(EXPECTED_VERSION_EXTENSION) or None
