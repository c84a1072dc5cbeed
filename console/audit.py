"""An AuditEvent for every console action, naming the person who acted.

The same shape as the hand-off records (plugins/audit.py): a FHIR AuditEvent in the store,
findable by standard search (``AuditEvent?altid=alice``, ``AuditEvent?subtype=console-signin``).
It is written with the proxy's own identity (people may not write AuditEvents through the API)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from proxy.store_reader import StoreReader

log = logging.getLogger("fhirplug.console")
CONSOLE_ACTION_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/console-action"
# DICOM's codes for sign-in and sign-out, which the AuditEvent type value set uses
LOGIN = {
    "system": "http://dicom.nema.org/resources/ontology/DCM",
    "code": "110114",
    "display": "User Authentication",
}
REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"}
ACTION_CODE = {"signin": "E", "signin-refused": "E", "signin-locked": "E", "signout": "E"}


def event(
    action: str, username: str, role: str | None, outcome_ok: bool, detail: str, address: str | None
) -> dict:
    ev: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": LOGIN if action.startswith(("signin", "signout")) else REST,
        "subtype": [{"system": CONSOLE_ACTION_SYSTEM, "code": f"console-{action}"}],
        "action": ACTION_CODE.get(action, "E"),
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "outcome": "0" if outcome_ok else "4",
        "outcomeDesc": detail[:1000],
        "agent": [
            {
                "type": {"text": f"console {role}" if role else "console"},
                "who": {"display": f"person {username}"},
                "altId": username,
                "requestor": True,
                **({"network": {"address": address, "type": "2"}} if address else {}),
            }
        ],
        "source": {"observer": {"display": "fhirplug console"}},
    }
    return ev


class ConsoleAudit:
    def __init__(self, store) -> None:
        self.store = StoreReader(store)

    def record(
        self,
        action: str,
        username: str,
        role: str | None = None,
        ok: bool = True,
        detail: str = "",
        address: str | None = None,
    ) -> None:
        """Write the event; a store that is down is logged, not shown to the person as a failure
        of what they did (the action itself already happened)."""
        ev = event(action, username, role, ok, detail, address)
        try:
            self.store.create(ev)
        except Exception:
            log.exception(
                "console audit event not written", extra={"fields": {"action": action, "user": username}}
            )
