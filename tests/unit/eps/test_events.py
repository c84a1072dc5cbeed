"""The $process-message contract: handlers by event code, imported on first call; roles per event."""

from __future__ import annotations

from datetime import UTC, datetime

from eps import events
from eps.events import HANDLERS, SENDER_ROLES, EventResult, Sender


def test_prescription_order_is_registered_and_only_prescribers_send_it():
    assert "prescription-order" in HANDLERS
    assert SENDER_ROLES["prescription-order"] == {"prescriber"}
    assert SENDER_ROLES["prescription-order-update"] == {"prescriber"}
    assert SENDER_ROLES["dispense-notification"] == {"dispenser"}


def test_every_handler_has_roles():
    assert set(HANDLERS) <= set(SENDER_ROLES)


def test_a_named_handler_is_imported_on_its_first_call(monkeypatch):
    import eps.order

    calls = []

    def fake(message, sender, store, now):
        calls.append((message, sender, store, now))
        return EventResult(code="ok")

    monkeypatch.setattr(eps.order, "handle", fake)
    handler = events._Named("eps.order:handle")
    sender = Sender("gp", "prescriber", "A83008")
    now = datetime.now(UTC)
    assert handler({"m": 1}, sender, None, now) == EventResult()
    assert calls == [({"m": 1}, sender, None, now)]


def test_an_event_result_defaults_to_ok_200():
    assert (EventResult().code, EventResult().status, EventResult().outcome) == ("ok", 200, None)
