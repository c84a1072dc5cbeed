"""The delivery value: one message or Task change on its way to one partner, and its kind."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

QUEUE = "fhirplug-forward"  # the RQ queue every delivery waits on


class DeliveryKind(StrEnum):
    """What is delivered; the value is what logs, job descriptions and audit records show."""

    MESSAGE = "message"
    SPOKE_TO_HUB = "spoke-to-hub message"
    HUB_TO_SPOKE = "hub-to-spoke dispense"
    TASK_CHANGE = "Task"  # shown with the Task's new status: "Task accepted"
    EPS_RESPONSE = "EPS response message"  # $process-message?async=true: the answer, to the sender
    GP_NOTIFICATION = "GP notification"  # an ITK3 message to a GP practice, over MESH (gpnotify)
    ROUTED = "routed resource"  # a point-to-point hand-off by rule (p2p.rules)


@dataclass
class Delivery:
    partner: str  # ODS code
    method: str  # POST (a message bundle to the base) or PATCH (a Task)
    path: str  # "" or "Task/123" or "Task?identifier=..."
    body: dict | list
    content_type: str = "application/fhir+json"
    request_id: str | None = None
    task_key: str | None = None  # deliveries about one Task keep their order
    kind: DeliveryKind = DeliveryKind.MESSAGE
    task_status: str | None = None  # a Task change: the status it leaves the Task in
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    queued_at: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        """How the delivery is shown to people: "spoke-to-hub message", "Task accepted", ..."""
        if self.kind is DeliveryKind.TASK_CHANGE:
            return f"Task {self.task_status}"
        return str(self.kind)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (the RQ job's argument and the outbox record's content)."""
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delivery:
        """The delivery from ``to_dict``; also reads records written before the kind existed
        (a free ``what`` label)."""
        data = dict(data)
        what = data.pop("what", None)
        if "kind" in data:
            data["kind"] = DeliveryKind(data["kind"])
        elif what is not None:
            data["kind"], status = _kind_of_label(str(what))
            data.setdefault("task_status", status)
        return cls(**data)


def _kind_of_label(what: str) -> tuple[DeliveryKind, str | None]:
    if what.startswith("Task "):
        return DeliveryKind.TASK_CHANGE, what.removeprefix("Task ")
    try:
        return DeliveryKind(what), None
    except ValueError:
        return DeliveryKind.MESSAGE, None
