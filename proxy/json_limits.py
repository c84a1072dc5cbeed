"""Limits on the JSON a caller may send, checked while it is parsed.

Each limit stops something that otherwise reaches a 5xx: nesting past Python's recursion limit
(or past what the store's parser survives), numbers too long for Python's int parser or too
large for the store's doubles (``1e999999999`` exhausts the store's heap), strings with a lone
UTF-16 surrogate (``"\\ud800"`` cannot be written back as UTF-8), and empty object keys (the
store's parser fails on ``{"": 1}``). Each is refused with a 400 pointing at the element.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import simplejson

from proxy.errors import FhirError

MAX_DEPTH = 100  # objects and arrays inside one another; FHIR resources need a few dozen at most
MAX_NUMBER_CHARS = 100  # digits, sign, point and exponent of one number literal
MAX_EXPONENT = 1000  # |e| of 1.5e<e>; the store keeps smaller exponents exactly
MAX_MAGNITUDE = Decimal("1.7976931348623157e308")  # the store indexes quantities as doubles

# a \uD800-\uDFFF escape in the raw text: only then can a decoded string hold a lone surrogate
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(raw: bytes | str):
    """Parse a request body like ``proxy.response.loads`` (decimals kept exact), within the limits.

    Raises ``simplejson.JSONDecodeError`` for text that is not JSON and ``UnicodeDecodeError``
    for bytes that are not UTF-8 (the caller words those), FhirError(400) for a limit passed.
    """
    try:
        value = simplejson.loads(raw, parse_float=_decimal, parse_int=_integer, allow_nan=False)
    except RecursionError as exc:
        raise _too_deep("$this") from exc
    check(value, surrogates=_has_surrogate_escape(raw))
    return value


def check(value, surrogates: bool = True) -> None:
    """Depth, empty keys and lone surrogates of a parsed value; FhirError(400) at the first problem.

    The walk is iterative: a value nested deeper than the limit is refused, not recursed into.
    """
    root = value.get("resourceType") if isinstance(value, dict) else None
    root = root if isinstance(root, str) and root.isidentifier() else "$this"
    # (value, depth, path) where path is (parent path, key or index): built only on error
    stack: list[tuple[object, int, tuple | None]] = [(value, 1, None)]
    walked = (dict, list, str) if surrogates else (dict, list)
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise _too_deep(expression(root, path))
            for key, child in node.items():
                if not key:
                    raise FhirError(
                        400,
                        'A JSON object has an empty key (""); FHIR element names are never empty',
                        [expression(root, path)],
                        code="structure",
                    )
                if surrogates and _SURROGATE.search(key):
                    raise _lone_surrogate(expression(root, path))
                if isinstance(child, walked):
                    stack.append((child, depth + 1, (path, key)))
        elif isinstance(node, list):
            if depth > MAX_DEPTH:
                raise _too_deep(expression(root, path))
            for i, child in enumerate(node):
                if isinstance(child, walked):
                    stack.append((child, depth + 1, (path, i)))
        elif surrogates and isinstance(node, str) and _SURROGATE.search(node):
            raise _lone_surrogate(expression(root, path))


def expression(root: str, path: tuple | None) -> str:
    """The FHIRPath of a walked element: ``Patient.name[0].family``."""
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    out = root
    for key in reversed(parts):
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


def _has_surrogate_escape(raw: bytes | str) -> bool:
    if isinstance(raw, str):
        return True  # already decoded: anything may be in it
    return _SURROGATE_ESCAPE.search(raw) is not None


def _number_error(text: str, why: str) -> FhirError:
    shown = text if len(text) <= 40 else text[:20] + "..." + text[-10:]
    return FhirError(400, f"The number {shown} is {why}", code="structure")


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _number_error(text, f"longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _decimal(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise _number_error(text, f"longer than {MAX_NUMBER_CHARS} characters")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # the scanner has matched a JSON number: not expected
        raise _number_error(text, "not a number") from exc
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > MAX_EXPONENT or abs(value) > MAX_MAGNITUDE:
        raise _number_error(text, "out of range (at most about 1.8e308, exponents within ±1000)")
    return value


def _too_deep(where: str) -> FhirError:
    return FhirError(400, f"The JSON is nested more than {MAX_DEPTH} levels deep", [where], code="structure")


def _lone_surrogate(where: str) -> FhirError:
    return FhirError(
        400,
        "A string holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape): not valid Unicode",
        [where],
        code="structure",
    )
