"""Filter criteria: how a subscriber narrows a topic, written as a FHIR search (the Backport IG's
``backport-filter-criteria``: ``MedicationRequest?subject=Patient/123&intent=order``).

Matched in memory against the stored resource, never by a store search per write: each topic's
resource type has a small table of search parameters (named as in FHIR R4's search parameters,
each read from the elements that parameter indexes). Values are matched as FHIR search matches
them: a token by ``code`` or ``system|code`` (an identifier by ``value`` or ``system|value``), a
reference by ``Type/id`` (also as the end of an absolute reference) or by the identifier the
reference carries (``system|value``); comma-separated values are alternatives (OR), parameters
are all required (AND). A parameter not in the table is refused when the Subscription is
written, so a filter can never silently match everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

Values = Callable[[dict[str, Any]], set[str]]


class FilterError(ValueError):
    """A filter the server cannot apply (unknown parameter, wrong resource type, bad syntax)."""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _get(resource: dict[str, Any], path: str) -> list[Any]:
    found: list[Any] = [resource]
    for name in path.split("."):
        found = [v for item in found if isinstance(item, dict) for v in _list(item.get(name))]
    return found


def _code(*paths: str) -> Values:
    def values(resource: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for path in paths:
            for v in _get(resource, path):
                if isinstance(v, str):
                    out.add(v)
                elif isinstance(v, dict):  # a CodeableConcept
                    for c in _list(v.get("coding")):
                        if isinstance(c, dict) and c.get("code"):
                            out |= {str(c["code"]), f"{c.get('system', '')}|{c['code']}"}
        return out

    return values


def _identifier(path: str = "identifier") -> Values:
    def values(resource: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for ident in _get(resource, path):
            if isinstance(ident, dict) and ident.get("value"):
                out |= {str(ident["value"]), f"{ident.get('system', '')}|{ident['value']}"}
        return out

    return values


def _reference(*paths: str) -> Values:
    def values(resource: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for path in paths:
            for ref in _get(resource, path):
                if not isinstance(ref, dict):
                    continue
                literal = ref.get("reference")
                if isinstance(literal, str) and literal:
                    literal = literal.split("/_history/")[0]
                    parts = literal.rstrip("/").split("/")
                    out.add("/".join(parts[-2:]) if len(parts) >= 2 else literal)
                ident = ref.get("identifier")
                if isinstance(ident, dict) and ident.get("value"):
                    out |= {str(ident["value"]), f"{ident.get('system', '')}|{ident['value']}"}
        return out

    return values


PARAMETERS: dict[str, dict[str, Values]] = {
    "MedicationRequest": {
        "identifier": _identifier(),
        "status": _code("status"),
        "intent": _code("intent"),
        "subject": _reference("subject"),
        "patient": _reference("subject"),
        "requester": _reference("requester"),
        "performer": _reference("dispenseRequest.performer", "performer"),
        "code": _code("medicationCodeableConcept"),
    },
    "MedicationDispense": {
        "identifier": _identifier(),
        "status": _code("status"),
        "subject": _reference("subject"),
        "patient": _reference("subject"),
        "performer": _reference("performer.actor"),
        "prescription": _reference("authorizingPrescription"),
        "code": _code("medicationCodeableConcept"),
    },
    "Task": {
        "identifier": _identifier(),
        "status": _code("status"),
        "intent": _code("intent"),
        "code": _code("code"),
        "subject": _reference("for"),
        "patient": _reference("for"),
        "owner": _reference("owner"),
        "requester": _reference("requester"),
        "focus": _reference("focus"),
        "based-on": _reference("basedOn"),
    },
}


@dataclass(frozen=True)
class Filter:
    """One parsed filter: every parameter must match one of its values."""

    resource_type: str
    terms: tuple[tuple[str, frozenset[str]], ...]

    def matches(self, resource: dict[str, Any]) -> bool:
        table = PARAMETERS[self.resource_type]
        return all(table[name](resource) & wanted for name, wanted in self.terms)

    @property
    def text(self) -> str:
        return self.resource_type + "?" + "&".join(f"{n}={','.join(sorted(v))}" for n, v in self.terms)


def parse(text: str, resource_type: str) -> Filter:
    """``text`` (``Type?a=1&b=x,y`` or ``a=1&b=x,y``) as a filter on ``resource_type``."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError("a filter criteria value must be a non-empty string")
    head, sep, query = text.strip().partition("?")
    if not sep:
        head, query = resource_type, text.strip()
    if head != resource_type:
        raise FilterError(f"the topic is about {resource_type}, not {head!r}")
    table = PARAMETERS[resource_type]
    terms: list[tuple[str, frozenset[str]]] = []
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if not pairs and query.strip():
        raise FilterError("a filter is parameter=value pairs joined by &")
    # "Type?" alone narrows nothing: every resource the topic fires for (how a Subscription
    # without filters is stored: the store's own check wants one)
    for name, value in pairs:
        if name not in table:
            known = ", ".join(sorted(table))
            raise FilterError(f"{resource_type} cannot be filtered by {name!r} (known: {known})")
        wanted = frozenset(v.strip() for v in value.split(",") if v.strip())
        if not wanted:
            raise FilterError(f"the filter parameter {name!r} has no value")
        terms.append((name, wanted))
    return Filter(resource_type, tuple(terms))


def all_match(filters: Iterable[Filter], resource: dict[str, Any]) -> bool:
    """Several filters on one Subscription are all required (an empty list: everything)."""
    return all(f.matches(resource) for f in filters)
