"""Search parameters the proxy checks itself because the store answers a bad value with a 500.

``_offset=-5`` makes the store fail inside its database layer; ``_count`` and the store's own
paging offset are held to the same rule so every paging parameter is refused the same way.
``_filter`` is switched off in the store, but the store parses it before saying so and fails
on malformed expressions (``(((``): it is refused here, whatever it holds. A conditional
update whose criteria the store cannot parse (``Task?_lastUpdated=xx2020``) fails in the store
with a 500, where the same criteria in a search are a 400: they are asked as a search first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl

from proxy.context import WriteEntry
from proxy.errors import FhirError
from proxy.store_reader import StoreReader

WHOLE_NUMBERS = ("_count", "_offset", "_getpagesoffset")
FORM = "application/x-www-form-urlencoded"
UNSUPPORTED = ("_filter",)
MAX_DIGITS = 9  # an offset or page size past a billion is not a real request
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def check_url(url: str, where: str) -> None:
    """The query of a bundle entry's request.url, held to the same rules."""
    _, _, query = url.partition("?")
    if query:
        check_pairs(parse_qsl(query, keep_blank_values=True), where)


def check(query: Iterable[tuple[str, str]], content_type: str | None = None, body: bytes = b"") -> None:
    """FhirError(400) for ``_filter`` or a paging parameter that is not a whole number
    (0, 1, 2, ...), in the URL or in a POST _search form body; and for a form body that is not
    percent-encoded properly."""
    pairs = list(query)
    if body and (content_type or "").split(";", 1)[0].strip().lower() == FORM:
        if _BAD_ESCAPE.search(body):  # the store relays the form as sent and fails decoding it: 500
            raise FhirError(400, "The form body has a % not followed by two hex digits", code="invalid")
        pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    check_pairs(pairs)


def check_pairs(pairs: list[tuple[str, str]], where: str | None = None) -> None:
    """``where`` is the FHIRPath the parameters came from (a bundle entry's request.url)."""
    for name, value in pairs:
        if name.split(":", 1)[0] in UNSUPPORTED:
            raise FhirError(
                400, f"{name} is not supported by this server", [where or name], code="not-supported"
            )
        if name in WHOLE_NUMBERS and not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
            raise FhirError(
                400,
                f"{name} must be a whole number (0 or more, at most {MAX_DIGITS} digits), not {value[:40]!r}",
                [where or name],
                code="invalid",
            )


def check_conditional_updates(store: StoreReader, entries: Iterable[WriteEntry]) -> None:
    """Ask the store to parse each conditional update's criteria as a search (``_summary=count``)
    before the update is sent; FhirError(400) with the store's words when it cannot."""
    for entry in entries:
        if entry.method != "PUT" or not entry.conditional:
            continue
        path, _, query = entry.url.partition("?")
        resource_type = path.strip("/").split("/", 1)[0]
        problem = store.criteria_problem(resource_type, query)
        if problem:
            where = [f"Bundle.entry[{entry.index}].request.url"] if entry.index is not None else []
            raise FhirError(400, f"The conditional update's criteria are not valid: {problem}", where)
