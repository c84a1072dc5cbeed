"""The contract between ``$process-message`` and the EPS event handlers behind it.

``POST [base]/$process-message`` (``plugins/eps_messaging.py`` over ``eps/messaging.py``) reads
the message Bundle, decides who sent it (the OAuth client, never the message), checks that the
sender's role may send the event, keeps the exchange idempotent by message id, and calls the
handler registered here for ``MessageHeader.eventCoding.code``. A handler does the event's work
on the store and says how it went in an ``EventResult``; it raises
``proxy.errors.FhirError(4xx, ..., expression=[...])`` for a message at fault (answered as a
``fatal-error`` response message, "do not resubmit") and lets a store failure be a 503 ("may
resubmit").

Adding an event is one line in ``HANDLERS`` (its roles are in ``SENDER_ROLES``). Handlers are
named by module and function and imported when first called, so a handler module may import this
one without a cycle.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Sender:
    """Who sent the message: from the OAuth client, never from the message."""

    client_id: str
    role: str
    ods: str


@dataclass
class EventResult:
    """How an event went, for the response message."""

    # an OperationOutcome to put in the response message (None: ok, nothing to say)
    outcome: dict | None = None
    code: str = "ok"  # MessageHeader.response.code: ok | transient-error | fatal-error
    status: int = 200  # HTTP status of the synchronous answer
    # True: the store shows this very message was processed before (a resend the dispatcher's
    # Redis record forgot); nothing was done now, and the answer is the original one
    replayed: bool = False


class EpsStore(Protocol):
    """What handlers need of the store; ``proxy.store_reader.StoreReader`` satisfies it."""

    def as_caller(self, role: str, ods: str | None) -> EpsStore: ...
    def read(self, resource_type: str, resource_id: str) -> dict | None: ...
    def search(
        self, resource_type: str, query: str | list[tuple[str, str]], count: int = 200
    ) -> list[dict]: ...
    def transaction(self, bundle: dict) -> tuple[int, dict | None]: ...
    def update(self, resource: dict, if_match: str | None = None) -> tuple[int, dict | None]: ...
    def create(self, resource: dict) -> dict | None: ...


class EventHandler(Protocol):
    def __call__(self, message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult: ...


class _Named:
    """A handler named by ``module:function``, imported on its first call."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._fn: EventHandler | None = None

    def __call__(self, message: dict, sender: Sender, store: EpsStore, now: datetime) -> EventResult:
        if self._fn is None:
            module, _, name = self.target.partition(":")
            self._fn = getattr(importlib.import_module(module), name)
        assert self._fn is not None
        return self._fn(message, sender, store, now)

    def __repr__(self) -> str:
        return f"<EPS event handler {self.target}>"


# event code (MessageHeader.eventCoding.code) -> handler; one line per event
HANDLERS: dict[str, EventHandler] = {
    "prescription-order": _Named("eps.order:handle"),
    "prescription-order-update": _Named("eps.cancel:handle"),
    "dispense-notification": _Named("eps.dispense:handle"),
}

# event code -> the client roles that may send it (tenant roles: the sender's ODS code is who acts);
# an event not listed here is refused to every role
SENDER_ROLES: dict[str, frozenset[str]] = {
    "prescription-order": frozenset({"prescriber"}),
    "prescription-order-update": frozenset({"prescriber"}),
    "dispense-notification": frozenset({"dispenser"}),
}

EVENT_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-event"
