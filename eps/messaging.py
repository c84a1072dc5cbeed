"""FHIR messaging for ``$process-message``: reading a request message, making its response message,
and the rules of the asynchronous pattern (where a response may go).

HL7's rules (the seed's ``$process-message`` OperationDefinition and FHIR messaging): the request
is a ``Bundle`` of type ``message`` with a ``MessageHeader`` first; the answer is a ``Bundle`` of
type ``message`` whose ``MessageHeader.response`` names the request (``identifier``) and says how
it went (``code``: ok, transient-error, fatal-error), its ``focus`` an OperationOutcome when there
is something to say. A message is known by its id: ``Bundle.id``, which the sender must give a new
value for every new message and keep for a resend ("reliable messaging"). EPS also puts a UUID in
``Bundle.identifier``; that is the prescription message's business id and signed content, not the
exchange's, so resends are recognised by ``Bundle.id`` (the HL7 rule), with ``MessageHeader.id``
as a fallback for senders that only fill that in.

Pure rules: no Flask, no store, no Redis.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from eps.events import EVENT_SYSTEM, EventResult
from proxy.errors import FhirError

RESPONSE_CODES = ("ok", "transient-error", "fatal-error")
# response-message ids are derived from the request's key: a resend gets the very same response
_RESPONSE_NAMESPACE = uuid.UUID("5b0f7d64-3c1b-4c6e-9f43-2f5d9a7c1e01")
_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


@dataclass(frozen=True)
class Request:
    """A request message, read: its header, event code and message id."""

    bundle: dict[str, Any]
    header: dict[str, Any]
    event: str
    message_id: str


def read(body: object) -> Request:
    """The request message, or a ``FhirError(400)`` naming what is wrong with its envelope."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError(400, "$process-message takes a Bundle of type 'message'", ["Bundle"])
    if body.get("type") != "message":
        raise FhirError(400, f"Bundle.type must be 'message', not {body.get('type')!r}", ["Bundle.type"])
    entries = body.get("entry")
    first = entries[0] if isinstance(entries, list) and entries else None
    header = first.get("resource") if isinstance(first, dict) else None
    if not isinstance(header, dict) or header.get("resourceType") != "MessageHeader":
        raise FhirError(
            400, "A message's first entry must be its MessageHeader", ["Bundle.entry[0].resource"]
        )
    coding = header.get("eventCoding")
    code = coding.get("code") if isinstance(coding, dict) else None
    if not isinstance(code, str) or not code:
        raise FhirError(400, "MessageHeader.eventCoding.code is required", ["MessageHeader.eventCoding.code"])
    system = coding.get("system") if isinstance(coding, dict) else None
    if system not in (None, EVENT_SYSTEM):
        raise FhirError(
            400,
            f"Unsupported event: MessageHeader.eventCoding.system must be {EVENT_SYSTEM}",
            ["MessageHeader.eventCoding.system"],
        )
    message_id = body.get("id") or header.get("id")
    if (
        not isinstance(message_id, str)
        or not message_id
        or set(message_id) - _ID_CHARS
        or len(message_id) > 64
    ):
        raise FhirError(
            400,
            "The message needs an id (Bundle.id, a FHIR id): it is what makes a resend safe",
            ["Bundle.id"],
            code="required",
        )
    return Request(body, header, code, message_id)


def digest(bundle: dict[str, Any]) -> str:
    """The message's content as one hash (key order and number spelling do not count)."""
    canonical = json.dumps(bundle, sort_keys=True, separators=(",", ":"), default=_number)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def response_message(
    request: Request, result: EventResult, *, key: str, now: datetime, source: str
) -> dict[str, Any]:
    """The response message to ``request``: HL7's shape, ``response.identifier`` the request's id.

    ``key`` (who sent which message) fixes the response's own id, so a resend that is answered
    again gets the same response message; ``source`` is this server's endpoint.
    """
    if result.code not in RESPONSE_CODES:
        raise ValueError(f"response code {result.code!r} is not one of {RESPONSE_CODES}")
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": str(uuid.uuid5(_RESPONSE_NAMESPACE, key + "#header")),
        "eventCoding": dict(request.header.get("eventCoding") or {}),
        "source": {"endpoint": source},
        "response": {"identifier": request.message_id, "code": result.code},
    }
    requester_source = (request.header.get("source") or {}).get("endpoint")
    if isinstance(requester_source, str):
        header["destination"] = [{"endpoint": requester_source}]
    if isinstance(request.header.get("sender"), dict):
        header["destination"] = header.get("destination") or [{"endpoint": "unknown"}]
        header["destination"][0]["receiver"] = request.header["sender"]
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
    ]
    if result.outcome is not None:
        outcome_id = str(uuid.uuid5(_RESPONSE_NAMESPACE, key + "#outcome"))
        header["response"]["details"] = {"reference": f"urn:uuid:{outcome_id}"}
        header["focus"] = [{"reference": f"urn:uuid:{outcome_id}"}]
        entries.append(
            {"fullUrl": f"urn:uuid:{outcome_id}", "resource": {**result.outcome, "id": outcome_id}}
        )
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_RESPONSE_NAMESPACE, key)),
        "type": "message",
        "timestamp": now.isoformat(timespec="seconds"),
        "entry": entries,
    }


def outcome_of(response: dict[str, Any]) -> dict[str, Any]:
    """The OperationOutcome a response message carries, or EPS's plain "informational" one."""
    for entry in response.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "OperationOutcome":
            return {k: v for k, v in resource.items() if k != "id"}
    return informational()


def informational(diagnostics: str | None = None) -> dict[str, Any]:
    """EPS's answer to a message that went through: one ``informational`` issue."""
    issue: dict[str, Any] = {"severity": "information", "code": "informational"}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fatal(error: FhirError) -> EventResult:
    """A handler's refusal as the response it means: fatal-error, its OperationOutcome, its status."""
    return EventResult(outcome=error.to_resource(), code="fatal-error", status=error.status)


# --- asynchronous messaging: where the response goes ----------------------------------------


def response_target(request: Request, response_url: str | None) -> tuple[str, str]:
    """Where the response message is to be sent, and the element it came from (for refusals):
    ``response-url`` when given, else ``MessageHeader.source.endpoint`` + ``/$process-message``
    (HL7: responses are submitted with ``async=true``)."""
    if response_url is not None:
        return response_url, "response-url"
    endpoint = (request.header.get("source") or {}).get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise FhirError(
            400,
            "An asynchronous message needs MessageHeader.source.endpoint or a response-url to answer to",
            ["MessageHeader.source.endpoint"],
            code="required",
        )
    return endpoint.rstrip("/") + "/$process-message", "MessageHeader.source.endpoint"


def path_under(url: str, base_url: str, expression: str) -> str:
    """``url`` as a path under ``base_url`` (a registered partner's FHIR base), with
    ``async=true`` added; anything else is refused (400): a response is never sent to an address
    a request made up (server-side request forgery), only to the sender's registered endpoint."""
    target, base = urlsplit(url), urlsplit(base_url.rstrip("/"))
    refused = FhirError(
        400,
        f"The response address {url!r} is not under the sender's registered endpoint; "
        "responses go only to a registered partner's own FHIR base",
        [expression],
    )
    if target.scheme not in ("http", "https") or "@" in target.netloc or target.fragment:
        raise refused
    try:
        same_origin = (target.scheme, target.hostname, target.port) == (base.scheme, base.hostname, base.port)
    except ValueError:  # a port that is not a number
        raise refused from None
    path = target.path
    # no dot segments, no encoded separators: the path must stay under the base as written
    if not same_origin or "%" in path or "\\" in path or posixpath.normpath(path or "/") != path.rstrip("/"):
        raise refused
    if not (path == base.path or path.startswith(base.path + "/")):
        raise refused
    relative = path[len(base.path) :].lstrip("/")
    query = [p for p in target.query.split("&") if p and p.split("=", 1)[0] != "async"]
    return relative + "?" + "&".join([*query, "async=true"])
