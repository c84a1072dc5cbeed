"""What both patch engines share: JSON value equality, and the rules a patched resource obeys.

After either kind of patch, empty objects, empty arrays and JSON nulls are dropped (FHIR JSON
never carries them), and ``resourceType`` and ``id`` must be unchanged (:func:`finish`).
An engine raises :class:`OpError` for one operation; it adds which operation failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from proxy.errors import FhirError


class OpError(Exception):
    """One operation failed; the caller adds which."""


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1 and objects compare key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b)) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    return a == b


def prune(value: Any) -> Any:
    """Drop empty objects, empty arrays and null members, bottom up (FHIR JSON has none)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = prune(v)
            if v is None or v == {} or v == []:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        items = [prune(v) for v in value]
        return [v for v in items if v != {} and v != []]
    return value


def finish(original: Mapping[str, Any], patched: Any, what: str) -> dict:
    """``patched`` pruned to FHIR JSON; 422 when it is no resource or changed its type or id."""
    if not isinstance(patched, dict):
        raise FhirError(422, f"{what} leaves no resource (the result is not a JSON object)", [], "processing")
    patched = prune(patched)
    rtype = original.get("resourceType") or "Resource"
    for element in ("resourceType", "id"):
        if patched.get(element) != original.get(element):
            raise FhirError(
                422, f"{what} may not change {rtype}.{element}", [f"{rtype}.{element}"], "processing"
            )
    return patched
