"""The pharmacy's side of ITK3 acks: what an InfAck or BusAck from the practice does to the
pharmacy's tracking record of the notification (an R4 ``Communication``, one per notification,
identified by ``NOTIFICATION_SYSTEM`` | the ITK message id).

Pure: the worker finds the Communication, calls :func:`apply_ack`, and writes the result back with
If-Match. Each ack received is recorded once, as an extension (``ACK_EXTENSION``) with its kind,
verdict, ITK3 code, reason, the ack's own message id and when it was taken in; a redelivered ack
(same ack message id) changes nothing.

The states (Communication.status):

- positive InfAck: ``in-progress`` stays (the practice has it, not filed yet); a ``preparation``
  one becomes ``in-progress`` (the ack proves MESH delivered it, even if our own "accepted" update
  was lost); the extension says it was received;
- positive BusAck: ``completed`` — the practice has filed it;
- any negative ack (ITK3: every negative code is fatal, nothing follows it): ``stopped``, with
  ``statusReason`` the ITK3 code and reason; the worker also raises it to the dead letters. A later
  positive ack does not undo ``stopped`` (ITK3 sends nothing after a negative).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpnotify import tracking
from gpnotify.acks import RESPONSE_CODES, Ack, AckKind
from gpnotify.tracking import NOTIFICATION_SYSTEM

ACK_EXTENSION = "https://fhirplug.org/fhir/StructureDefinition/gp-notification-ack"
FINAL = frozenset({tracking.FAILED, "entered-in-error"})


@dataclass(frozen=True)
class Intake:
    """What taking an ack in did: the Communication to write (None: nothing changed) and whether
    the ack is a failure somebody must see (the dead letters)."""

    communication: dict[str, Any] | None
    dead_letter: bool


def search_params(ack: Ack) -> dict[str, str]:
    """The store search that finds the notification's tracking Communication."""
    return {"identifier": f"{NOTIFICATION_SYSTEM}|{ack.acked_message_id}"}


def acks_recorded(communication: dict[str, Any]) -> list[dict[str, Any]]:
    """The acks a Communication records, each as a plain dict (kind, ok, code, reason, …)."""
    out = []
    for ext in communication.get("extension") or []:
        if ext.get("url") != ACK_EXTENSION:
            continue
        fields: dict[str, Any] = {}
        for e in ext.get("extension") or []:
            value = next((v for k, v in e.items() if k.startswith("value")), None)
            fields[e.get("url")] = value.get("code") if isinstance(value, dict) else value
        out.append(fields)
    return out


def apply_ack(communication: dict[str, Any], ack: Ack, now: datetime | None = None) -> Intake:
    """The Communication after ``ack``; ``Intake(None, …)`` when this ack was already recorded."""
    if any(a.get("ackMessageId") == ack.message_id for a in acks_recorded(communication)):
        return Intake(None, dead_letter=False)
    out = copy.deepcopy(communication)
    out.setdefault("extension", []).append(_extension(ack, now))
    if not ack.ok:
        out["status"] = tracking.FAILED
        out["statusReason"] = {
            "coding": [{"system": RESPONSE_CODES, "code": ack.code}],
            "text": f"negative {ack.kind}: {ack.reason or ack.code}",
        }
    elif ack.kind is AckKind.BUS and out.get("status") not in FINAL:
        out["status"] = tracking.ACKNOWLEDGED
    elif out.get("status") == tracking.QUEUED:
        out["status"] = tracking.SENT
    return Intake(out, dead_letter=not ack.ok)


def _extension(ack: Ack, now: datetime | None) -> dict[str, Any]:
    when = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    parts: list[dict[str, Any]] = [
        {"url": "kind", "valueCode": str(ack.kind)},
        {"url": "ok", "valueBoolean": ack.ok},
        {"url": "code", "valueCoding": {"system": RESPONSE_CODES, "code": ack.code}},
    ]
    if ack.reason:
        parts.append({"url": "reason", "valueString": ack.reason})
    parts.append({"url": "ackMessageId", "valueString": ack.message_id})
    parts.append({"url": "received", "valueDateTime": when})
    return {"url": ACK_EXTENSION, "extension": parts}
