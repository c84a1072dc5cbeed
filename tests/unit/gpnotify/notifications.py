"""Built notifications for the receiving side's tests: the three examples' data as the pharmacy FA565
sends it, a distinct message per ``version`` (the stored resource version the message id derives from)."""

from __future__ import annotations

import json

from gpnotify import Sender, build_emergency_supply, build_immunisation, build_minor_illness_referral
from gpnotify.itk import ItkMessage
from tests.unit.gpnotify.examples import r4_inputs

PHARMACY = Sender("FA565", "FA565OT001")


EXAMPLE_PRACTICE = "GP123456"  # the emergency supply's and minor illness referral's practice


def _inputs(name: str, practice: str | None) -> list[dict]:
    """The fixture's resources, the patient's practice ODS code swapped for ``practice`` if given."""
    resources = r4_inputs(name)
    if practice is None:
        return resources
    return json.loads(json.dumps(resources).replace(f'"{EXAMPLE_PRACTICE}"', json.dumps(practice)))


def _versioned(resource: dict, version: str) -> dict:
    return {**resource, "meta": {**(resource.get("meta") or {}), "versionId": version}}


def immunisation(version: str = "1", sender: Sender = PHARMACY) -> ItkMessage:
    focus, *related = r4_inputs("immunisation-JackDawkins.r4.json")
    return build_immunisation(_versioned(focus, version), related, sender)


def emergency_supply(
    version: str = "1", sender: Sender = PHARMACY, practice: str | None = None
) -> ItkMessage:
    resources = _inputs("emergency-supply-WilliamSmith.r4.json", practice)
    dispenses = [_versioned(d, version) for d in resources[:2]]
    return build_emergency_supply(dispenses, resources[2:], sender)


def minor_illness(version: str = "1", sender: Sender = PHARMACY, practice: str | None = None) -> ItkMessage:
    focus, *related = _inputs("minor-illness-referral-JackSmith.r4.json", practice)
    return build_minor_illness_referral(_versioned(focus, version), related, sender)
