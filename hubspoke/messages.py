"""What a hub-and-spoke message is: its two kinds, how a Bundle is classified, its digest, and
how its entries are read (the shape checks in ``hubspoke.message_rules`` read them the same way).

Two transaction Bundles travel between a spoke pharmacy and its hub (NHS England
``England-Bundle-PharmacySpokeToHub`` and ``England-Bundle-PharmacyHubToSpoke``). A Bundle that
declares one of their profiles is that message; a transaction is classified by its content:
a MedicationRequest with a Task created is spoke-to-hub, a MedicationDispense with a Task (or
the PATCH of one) hub-to-spoke. Anything else is not a hub-and-spoke message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import simplejson

SPOKE_TO_HUB = "spoke-to-hub"
HUB_TO_SPOKE = "hub-to-spoke"
PROFILES = {
    "https://fhir.nhs.uk/England/StructureDefinition/England-Bundle-PharmacySpokeToHub": SPOKE_TO_HUB,
    "https://fhir.nhs.uk/England/StructureDefinition/England-Bundle-PharmacyHubToSpoke": HUB_TO_SPOKE,
}
JSON_PATCH_TYPES = ("application/json-patch+json", "application/json")


def bundle_entries(bundle: dict) -> list[dict]:
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return [e if isinstance(e, dict) else {} for e in entries] if isinstance(entries, list) else []


def entry_request(entry: dict) -> dict:
    req = entry.get("request")
    return req if isinstance(req, dict) else {}


def entry_method(entry: dict) -> str:
    return str(entry_request(entry).get("method") or "").upper()


def entry_url(entry: dict) -> str:
    return str(entry_request(entry).get("url") or "")


def entry_resource(entry: dict) -> dict:
    res = entry.get("resource")
    return res if isinstance(res, dict) else {}


def entry_type(entry: dict) -> str | None:
    """The type of resource an entry carries; None for a PATCH (its resource is the patch)."""
    if entry_method(entry) == "PATCH":
        return None
    return entry_resource(entry).get("resourceType")


def url_type(url: str) -> str:
    return url.split("?", 1)[0].split("/", 1)[0]


def is_task_patch(entry: dict) -> bool:
    return entry_method(entry) == "PATCH" and url_type(entry_url(entry)) == "Task"


def entries_of_type(entries: list[dict], rtype: str) -> list[int]:
    return [i for i, e in enumerate(entries) if entry_type(e) == rtype]


def _declared_kind(bundle: dict) -> str | None:
    meta = bundle.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    if not isinstance(profiles, list):
        return None
    kinds = {PROFILES.get(str(p).split("|", 1)[0]) for p in profiles} - {None}
    return kinds.pop() if len(kinds) == 1 else None


def classify(bundle: Any) -> str | None:
    """``"spoke-to-hub"``, ``"hub-to-spoke"`` or None (not a hub-and-spoke message)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    declared = _declared_kind(bundle)
    if declared:
        return declared
    if bundle.get("type") != "transaction":
        return None
    entries = bundle_entries(bundle)
    types = {entry_type(e) for e in entries}
    if "MedicationRequest" in types and any(
        entry_type(e) == "Task" and entry_method(e) in ("POST", "PUT") for e in entries
    ):
        return SPOKE_TO_HUB
    if "MedicationDispense" in types and ("Task" in types or any(is_task_patch(e) for e in entries)):
        return HUB_TO_SPOKE
    return None


def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (FHIRPath, value) below ``node``, depth first, in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")
    yield path, node


def json_patch_of(entry: dict) -> list | None:
    """The operations of a JSON Patch carried in a Binary, or None if it cannot be read."""
    res = entry_resource(entry)
    if res.get("resourceType") != "Binary" or not isinstance(res.get("data"), str):
        return None
    if str(res.get("contentType") or "").split(";", 1)[0].strip().lower() not in JSON_PATCH_TYPES:
        return None
    try:
        ops = json.loads(base64.b64decode(res["data"], validate=True))
    except (binascii.Error, ValueError):
        return None
    return ops if isinstance(ops, list) else None


def digest(bundle: dict) -> str:
    """SHA-256 of the message's canonical JSON (sorted keys, exact decimals): same content, same digest."""
    canonical = simplejson.dumps(bundle, sort_keys=True, separators=(",", ":"), use_decimal=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def task_entry(bundle: dict) -> dict | None:
    """The first entry of ``bundle`` that carries a Task resource."""
    for e in bundle.get("entry") or []:
        if (e.get("resource") or {}).get("resourceType") == "Task":
            return e
    return None
