"""Reads a FHIR REST URL and method into an Interaction, or refuses what is not FHIR REST."""

from __future__ import annotations

import re
from collections.abc import Mapping

from proxy.canonical import Target
from proxy.context import Interaction
from proxy.errors import FhirError

_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ALLOWED = {
    "read": "GET",
    "vread": "GET",
    "history-instance": "GET",
    "history-type": "GET",
    "history-system": "GET",
    "capabilities": "GET",
    "search-compartment": "GET",
}


def _unknown(path: str) -> FhirError:
    return FhirError(404, f"Unknown FHIR route: /fhir/{path}")


def _not_allowed(method: str, path: str) -> FhirError:
    return FhirError(405, f"{method} is not allowed on /fhir/{path}", code="not-supported")


def parse_interaction(
    method: str, path: str, has_query: bool, headers: Mapping[str, str], paging: bool = False
) -> Interaction:
    """``path`` is below the FHIR base without its leading slash; ``paging``: a ``_getpages`` query."""
    seg = [s for s in path.split("/") if s] if path else []
    n = len(seg)

    if n == 0:
        if method == "POST":
            return Interaction("transaction", method)  # or batch: decided by Bundle.type
        if method == "GET":
            return Interaction("page" if paging else "search-system", method)
        raise _not_allowed(method, path)

    head = seg[0]
    if n == 1 and head == "metadata":
        return _only_get("capabilities", method, path)
    if n == 1 and head == "_history":
        return _only_get("history-system", method, path)
    if n == 1 and head == "_search":
        return Interaction("search-system", method)
    if head.startswith("$"):
        if n != 1:
            raise _unknown(path)
        return Interaction("operation", method, operation=head)
    if not _TYPE.match(head):
        raise _unknown(path)

    rtype = head
    if n == 1:
        if method == "GET":
            return Interaction("search-type", method, rtype)
        if method == "POST":
            return Interaction("create", method, rtype, conditional="if-none-exist" in headers)
        if method in ("PUT", "PATCH", "DELETE"):
            if not has_query:
                raise FhirError(400, f"{method} /fhir/{rtype} needs an id or search criteria", code="invalid")
            kind = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            return Interaction(kind, method, rtype, conditional=True)
        raise _not_allowed(method, path)

    second = seg[1]
    if n == 2 and second == "_search":
        if method not in ("GET", "POST"):
            raise _not_allowed(method, path)
        return Interaction("search-type", method, rtype)
    if n == 2 and second == "_history":
        return _only_get("history-type", method, path, rtype)
    if second.startswith("$"):
        if n != 2:
            raise _unknown(path)
        return Interaction("operation", method, rtype, operation=second)
    if not _ID.match(second):
        raise _unknown(path)

    rid = second
    if n == 2:
        instance_kind = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        if instance_kind is None:
            raise _not_allowed(method, path)
        return Interaction(instance_kind, method, rtype, rid)

    third = seg[2]
    if n == 3 and third == "_history":
        return _only_get("history-instance", method, path, rtype, rid)
    if n == 4 and third == "_history" and _ID.match(seg[3]):
        return Interaction(_check("vread", method, path), method, rtype, rid, version=seg[3])
    if n == 3 and third.startswith("$"):
        return Interaction("operation", method, rtype, rid, operation=third)
    if n == 3 and _TYPE.match(third):
        # compartment search, e.g. Patient/1/MedicationRequest
        return Interaction(_check("search-compartment", method, path), method, third, rid)
    raise _unknown(path)


def _check(kind: str, method: str, path: str) -> str:
    if _ALLOWED.get(kind, method) != method:
        raise _not_allowed(method, path)
    return kind


def _only_get(kind, method, path, rtype=None, rid=None) -> Interaction:
    return Interaction(_check(kind, method, path), method, rtype, rid)


def parse_entry(method: str, target: Target, index: int) -> Interaction:
    """What a transaction or batch entry asks for, read from its canonical URL by the same rules
    as a request line; what those rules cannot place is refused with the entry's expression."""
    try:
        return parse_interaction(method, target.path, bool(target.query), {}, "_getpages" in target.names())
    except FhirError as exc:
        raise FhirError(
            400,
            f"Entry {index}: {exc.diagnostics}",
            [f"Bundle.entry[{index}].request.url"],
            code="invalid",
        ) from None
