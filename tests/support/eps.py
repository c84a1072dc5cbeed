"""EPS prescriptions for tests, stored as the prescriber would store them.

Until ``$process-message`` stores prescriptions, tests seed them by sending
``eps.records.prescription_transaction`` straight to the store, signed as the prescriber
(``prescriber;<ODS>``), so the store's own tenancy line judges the write as it would judge
``$process-message``'s. Each prescription is the shared primary-care message with a fresh
short-form id (valid check character), a fresh prescription UUID and fresh message ids.
"""

from __future__ import annotations

import functools
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from redis import Redis

from eps.records import message_key, prescription_transaction
from proxy.direct_store import DirectStore
from proxy.store_caller import HEADER, CallerSigner

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "eps"
SEND = "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Process-Request-Send-200_OK.json"
PRESCRIBER_ODS = "A83008"  # the example's surgery
NHS_NUMBER = "9449304130"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@functools.lru_cache(maxsize=1)
def _send_message() -> str:
    return (EXAMPLES / SEND).read_text()


def check_character(first17: str) -> str:
    """ISO 7064 MOD 37-2 ("+" for "*") over the 17 characters before the check character."""
    total = 0
    for char in first17.replace("-", "").upper():
        total = ((total + int(char, 36)) * 2) % 37
    return _ALPHABET[(38 - total) % 37]


def new_short_form_id(prescriber_ods: str = PRESCRIBER_ODS) -> str:
    """``XXXXXX-PPPPPP-XXXXXC``: random hex, the prescriber's ODS padded to 6, the check character."""
    ods = prescriber_ods.rjust(6, "0")[-6:]
    body = f"{secrets.token_hex(3).upper()}-{ods}-{secrets.token_hex(3).upper()[:5]}"
    return body + check_character(body)


def new_message(short_id: str, nominated_ods: str | None, nhs_number: str = NHS_NUMBER) -> dict[str, Any]:
    """The shared prescription-order message as a new prescription: fresh ids throughout."""
    message = json.loads(_send_message())
    message["id"] = str(uuid.uuid4())
    message["identifier"]["value"] = str(uuid.uuid4())
    long_form = str(uuid.uuid4())
    for entry in message["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "MedicationRequest":
            group = resource["groupIdentifier"]
            group["value"] = short_id
            group["extension"][0]["valueIdentifier"]["value"] = long_form
            if nominated_ods:
                resource["dispenseRequest"]["performer"]["identifier"]["value"] = nominated_ods
            else:
                resource["dispenseRequest"].pop("performer", None)
        elif resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = nhs_number
        elif resource["resourceType"] == "MessageHeader" and nominated_ods:
            resource["destination"][0]["receiver"]["identifier"]["value"] = nominated_ods
    return message


def transaction(
    short_id: str,
    nominated_ods: str | None,
    authored_on: str,
    *,
    prescriber_ods: str = PRESCRIBER_ODS,
    nhs_number: str = NHS_NUMBER,
) -> dict[str, Any]:
    """The store transaction ``$process-message`` would send for a new prescription."""
    message = new_message(short_id, nominated_ods, nhs_number)
    return prescription_transaction(
        message,
        short_id=short_id,
        message_key_value=message_key(prescriber_ods, message["identifier"]["value"]),
        nhs_number=nhs_number,
        authored_on=authored_on,
        prescriber_ods=prescriber_ods,
        nominated_ods=nominated_ods,
    )


def authored(minutes_ago: float) -> str:
    """An authoredOn ``minutes_ago`` minutes before now (releases hand out the oldest first)."""
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")


class SignedAs(requests.auth.AuthBase):
    """``requests`` auth that asserts a tenant caller to the store (what the proxy signs)."""

    def __init__(self, role: str, ods: str):
        self.role, self.ods = role, ods
        self.signer = CallerSigner.from_env()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers[HEADER] = self.signer.header(self.role, self.ods)
        return r


class Seeder:
    """Stores prescriptions in the store at ``store_url`` as the prescriber (signed caller),
    inside the read cache's write fence (``redis_url``), as every write past the proxy must be."""

    def __init__(self, store_url: str, redis_url: str, prescriber_ods: str = PRESCRIBER_ODS):
        self.prescriber_ods = prescriber_ods
        self.store = DirectStore(
            store_url, Redis.from_url(redis_url), auth=SignedAs("prescriber", prescriber_ods)
        )

    def seed(
        self,
        nominated_ods: str | None,
        authored_on: str | None = None,
        *,
        nhs_number: str = NHS_NUMBER,
        short_id: str | None = None,
    ) -> str:
        """One new prescription; its short-form id."""
        short_id = short_id or new_short_form_id(self.prescriber_ods)
        tx = transaction(
            short_id,
            nominated_ods,
            authored_on or authored(0),
            prescriber_ods=self.prescriber_ods,
            nhs_number=nhs_number,
        )
        r = self.store.post("", tx, timeout=60)
        if r.status_code != 200:
            raise AssertionError(f"seeding {short_id} failed: {r.status_code} {r.text[:500]}")
        return short_id

    def seed_many(self, nominated_ods: str | None, n: int, oldest_minutes_ago: float = 600) -> list[str]:
        """``n`` prescriptions nominated to ``nominated_ods``, oldest first, a minute apart."""
        return [self.seed(nominated_ods, authored(oldest_minutes_ago - i)) for i in range(n)]

    def close(self) -> None:
        self.store.close()
