"""The audit trail of a prescription's lifecycle: one AuditEvent per step, naming who did it.

Each step (received, released, dispensed, cancelled, returned, withdrawn) is recorded as an
AuditEvent in the style of the hub-and-spoke hand-offs (``plugins/audit.py``): ``subtype`` the
step (hand-off code system), the agent the sending organisation's ODS code with the OAuth client
id as ``altId`` (the client, never what the message claims), the entity the prescription's
tracking Task, and the prescription's tenant labels, so whoever sees the prescription sees its
history. Written in the same store transaction as the step where there is one, so the record
exists exactly when the step happened.

Search: ``AuditEvent?entity=Task/1``, ``AuditEvent?altid=<client>``, ``AuditEvent?subtype=received``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eps.events import Sender
from hubspoke.identifiers import HANDOFF_SYSTEM, ODS_SYSTEM

ACTIONS = {
    "received": "C",
    "released": "R",
    "dispensed": "U",
    "cancelled": "U",
    "returned": "U",
    "withdrawn": "U",
}


def lifecycle_event(
    step: str,
    sender: Sender,
    task_ref: str,
    *,
    now: datetime,
    labels: list[dict[str, str]],
    short_form_id: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """The AuditEvent for ``step`` on the prescription whose tracking Task is ``task_ref``
    (a reference or, inside a transaction, its fullUrl)."""
    entity: dict[str, Any] = {"what": {"reference": task_ref}}
    if short_form_id:
        entity["name"] = short_form_id  # AuditEvent?entity-name=<short-form id>
    if message_id:
        entity["description"] = f"message {message_id}"
    return {
        "resourceType": "AuditEvent",
        "meta": {"security": [dict(label) for label in labels]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": HANDOFF_SYSTEM, "code": step}],
        "action": ACTIONS.get(step, "U"),
        "recorded": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0",
        "agent": [
            {
                "who": {
                    "identifier": {"system": ODS_SYSTEM, "value": sender.ods},
                    "display": f"client {sender.client_id}",
                },
                "altId": sender.client_id,
                "requestor": True,
            }
        ],
        # handlers do not know the deployment's ODS code; the broker itself observed the step
        "source": {"observer": {"display": "fhirplug EPS broker"}},
        "entity": [entity],
    }
