"""When a MedicationRequest is complete: the one rule for every dispense path.

A request is complete once its *completed* MedicationDispenses

- add up to at least ``dispenseRequest.quantity`` (quantities compared in the request's unit:
  the same ``system|code``, or the same ``unit`` text when neither has a code; a dispense in
  another unit is not counted, because nothing here converts units), or
- include one marked as the last expected: ``type`` medicationdispense-type ``0001`` "Item
  fully dispensed" (EPS's code for the end of a line item, which EPS's own dispense
  notification also reads as "completed").

A request without a quantity is complete only by that mark: a dispense without one could be the
first of several. Anything else (partial, in-progress, declined, entered-in-error) leaves it as
it was. Only an ``active`` request (or ``on-hold``) is moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

DISPENSE_TYPE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/medicationdispense-type"
FULLY_DISPENSED = "0001"
MOVABLE = frozenset({"active", "on-hold"})


def completes(request: dict[str, Any], dispenses: Iterable[dict[str, Any]]) -> bool:
    """True when ``dispenses`` (every dispense against ``request``, including the one being
    written) complete an active ``request``."""
    if request.get("status") not in MOVABLE:
        return False
    done = [d for d in dispenses if isinstance(d, dict) and d.get("status") == "completed"]
    if any(is_last_expected(d) for d in done):
        return True
    wanted = (request.get("dispenseRequest") or {}).get("quantity")
    target = _amount(wanted)
    if target is None or target <= 0:
        return False
    total = sum((a for d in done if (a := _amount(d.get("quantity"), like=wanted)) is not None), Decimal(0))
    return total >= target


def is_last_expected(dispense: dict[str, Any]) -> bool:
    """The dispense says it is the last one expected (medicationdispense-type 0001)."""
    codings = (dispense.get("type") or {}).get("coding") or []
    return any(
        isinstance(c, dict) and c.get("system") == DISPENSE_TYPE_SYSTEM and c.get("code") == FULLY_DISPENSED
        for c in codings
    )


def _amount(quantity: object, like: object = None) -> Decimal | None:
    """The value of a Quantity; with ``like``, only when it is in ``like``'s unit."""
    if not isinstance(quantity, dict):
        return None
    if isinstance(like, dict) and _unit(quantity) != _unit(like):
        return None
    try:
        value = Decimal(str(quantity.get("value")))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _unit(quantity: dict[str, Any]) -> tuple[str, str]:
    if quantity.get("code") is not None:
        return (str(quantity.get("system") or ""), str(quantity["code"]))
    return ("", str(quantity.get("unit") or ""))
