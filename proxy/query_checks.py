"""Search parameters the proxy checks itself because the store answers a bad value with a 500.

``_offset=-5`` makes the store fail inside its database layer; ``_count`` and the store's own
paging offset are held to the same rule so every paging parameter is refused the same way.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from proxy.errors import FhirError

WHOLE_NUMBERS = ("_count", "_offset", "_getpagesoffset")
FORM = "application/x-www-form-urlencoded"
MAX_DIGITS = 9  # an offset or page size past a billion is not a real request


def check(query: list[tuple[str, str]], content_type: str | None = None, body: bytes = b"") -> None:
    """FhirError(400) unless every paging parameter, in the URL or a POST _search form body,
    is a whole number (0, 1, 2, ...)."""
    pairs = list(query)
    if body and (content_type or "").split(";", 1)[0].strip().lower() == FORM:
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    for name, value in pairs:
        if name in WHOLE_NUMBERS and not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
            raise FhirError(
                400,
                f"{name} must be a whole number (0 or more, at most {MAX_DIGITS} digits), not {value[:40]!r}",
                [name],
                code="invalid",
            )
