"""What became of one MESH inbox message, and the one way a step says "try again next poll"."""

from __future__ import annotations

from dataclasses import dataclass


class StoreFailed(RuntimeError):
    """The store did not take a write: the MESH message stays in the inbox for the next poll."""


@dataclass(frozen=True)
class Taken:
    """What became of one inbox message (the tests and the log read it)."""

    mesh_id: str
    outcome: str  # stored, duplicate, quarantined, ack-recorded, ack-duplicate, dead-letter, left
    detail: str = ""
