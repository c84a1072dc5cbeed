"""The contract between the ``$process-message`` dispatcher and the handlers of each EPS event.

STAND-IN: the dispatcher's branch (eps-msg) owns this module; this copy holds exactly the agreed
shape so the lifecycle handlers can be written and tested before it lands, and gives way to
theirs when it is merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Sender:
    client_id: str
    role: str
    ods: str  # from the OAuth client, never from the message


@dataclass
class EventResult:
    outcome: dict | None = None  # OperationOutcome for the response message (None: ok)
    code: str = "ok"  # MessageHeader.response.code: ok | transient-error | fatal-error
    status: int = 200


class EpsStore(Protocol):  # proxy.store_reader.StoreReader satisfies it
    def as_caller(self, role: str, ods: str | None) -> EpsStore: ...
    def read(self, resource_type: str, resource_id: str) -> dict | None: ...
    def search(self, resource_type: str, query, count: int = 200) -> list[dict]: ...
    def transaction(self, bundle: dict) -> tuple[int, dict | None]: ...
    def update(self, resource: dict, if_match: str | None = None) -> tuple[int, dict | None]: ...
    def create(self, resource: dict) -> dict | None: ...


class EventHandler(Protocol):
    def __call__(self, message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult: ...


HANDLERS: dict[str, EventHandler] = {}
