"""What every plugin that serves a FHIR operation itself needs from the proxy (EPS $prepare,
$process-message, Task/$release, a return Task): the method check, the body read like any
other body the proxy reads, and the operation's line in the CapabilityStatement."""

from __future__ import annotations

from typing import Any

from proxy import bodies, json_shapes
from proxy.context import RequestContext
from proxy.errors import FhirError
from proxy.response import ProxyResponse


def require_post(ctx: RequestContext, name: str) -> None:
    """405 with ``Allow: POST`` for any other method (``name`` as the caller wrote the path)."""
    if ctx.request.method != "POST":
        raise FhirError(405, f"{name} takes POST, not {ctx.request.method}", headers={"Allow": "POST"})


def json_body(ctx: RequestContext, root: str, missing: str) -> Any:
    """The posted JSON, parsed and shape-checked as every JSON body the proxy reads. ``root`` is
    the element a refusal points at (the whole body: ``Bundle``, ``Parameters``, ``Task``);
    ``missing`` says what an empty body should have held. A FHIR XML body has already been
    converted to JSON (``proxy.xml_intake``) before any plugin runs."""
    raw = ctx.request_body()
    has_body = bool(raw.strip())
    media_type = bodies.check_body_media_type(ctx.interaction, ctx.request.content_type, has_body)
    if not has_body:
        raise FhirError(400, missing, [root])
    try:
        body = bodies.parse_json(raw)
    except FhirError as exc:
        exc.expression = exc.expression or [root]
        raise
    json_shapes.check(body, media_type)
    return body


def advertise(response: ProxyResponse, capability: dict[str, str], on_type: str | None = None) -> None:
    """Add ``capability`` ({name, definition}) to the CapabilityStatement the store answered for
    ``/metadata``: as a system operation, or on resource ``on_type``. Anything else is left as is."""
    if response.status != 200 or not response.is_json:
        return
    cs = response.resource
    if not isinstance(cs, dict) or cs.get("resourceType") != "CapabilityStatement":
        return
    rest = cs.get("rest")
    if not isinstance(rest, list) or not rest or not isinstance(rest[0], dict):
        return
    holder: Any = rest[0]
    if on_type is not None:
        holder = next(
            (r for r in rest[0].get("resource") or [] if isinstance(r, dict) and r.get("type") == on_type),
            None,
        )
        if holder is None:
            return
    operations = holder.setdefault("operation", [])
    if isinstance(operations, list) and capability not in operations:
        operations.append(dict(capability))
        response.resource = cs
