"""How a ``$validate`` request is sent to the store.

FHIR lets the body be the resource to validate or the operation's own ``Parameters``
(``resource``, ``mode``, ``profile``). The store reads every ``Parameters`` body as the
operation's parameters, so a ``Parameters`` *resource* sent to be validated arrives as
"No resource supplied". We tell them apart by content: a ``Parameters`` whose parameters are
only the operation's own names and which carries a ``resource`` is the operation's parameters;
any other ``Parameters`` is the resource to validate and is wrapped as the ``resource``
parameter, with ``mode`` and ``profile`` from the query beside it.

Everything else goes as the caller sent it, byte for byte: the store then reports line and
column in the caller's own document. A wrapped ``Parameters`` keeps its line numbers too: the
wrapper is written around the caller's bytes on their first line, adding no line break.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

OPERATION_PARAMETERS = frozenset({"resource", "mode", "profile"})
MODES = frozenset({"create", "update", "delete"})
FHIR_JSON = "application/fhir+json; charset=utf-8"


@dataclass(frozen=True)
class StoreValidate:
    body: bytes
    media_type: str
    withheld: frozenset[str]  # query parameters now carried in the body


def is_operation_parameters(body: dict) -> bool:
    params = body.get("parameter")
    if not isinstance(params, list) or not params:
        return False
    names = [p.get("name") for p in params if isinstance(p, dict)]
    if len(names) != len(params) or not set(names) <= OPERATION_PARAMETERS:
        return False
    return any(isinstance(p.get("resource"), dict) for p in params if p.get("name") == "resource")


def mode_problem(query: list[tuple[str, str]]) -> str | None:
    """Why the query's ``mode`` is not one FHIR defines (create, update, delete), or None."""
    for k, v in query:
        if k == "mode" and v not in MODES:
            return f"mode {v!r} is not one of create, update, delete"
    return None


def wrap(raw: bytes, query: list[tuple[str, str]]) -> StoreValidate | None:
    """The store's request for a JSON ``$validate`` body ``raw``, or None to send it as it is."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None  # the proxy's own parser refuses it with its line and column
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Parameters"
        or is_operation_parameters(body)
    ):
        return None
    extra = [
        {"name": k, "valueCode" if k == "mode" else "valueCanonical": v}
        for k, v in query
        if k in ("mode", "profile") and v
    ]
    head = '{"resourceType":"Parameters","parameter":['
    head += "".join(json.dumps(p, separators=(",", ":")) + "," for p in extra)
    head += '{"name":"resource","resource":'
    text = raw.decode("utf-8").lstrip("\ufeff")
    # the caller's first line stays the first line: no break before it, none added after
    out = head + text.rstrip() + "}]}" + text[len(text.rstrip()) :]
    return StoreValidate(out.encode("utf-8"), FHIR_JSON, frozenset({"mode", "profile"}))
