"""Reading and checking a Subscription a client writes, as the Backport IG shapes it in R4.

A topic-based R4 Subscription names its topic's canonical in ``criteria``, its filters in
``_criteria``'s ``backport-filter-criteria`` extensions, its payload content in
``channel._payload``'s ``backport-payload-content`` extension and its heartbeat in
``channel``'s ``backport-heartbeat-period`` extension. Only ``rest-hook`` channels are offered,
to one of two kinds of endpoint: a registered partner's FHIR base (notifications are sent with
our signed-JWT client for that partner, as forwarding does), or any other ``https`` endpoint
(``http`` only on loopback) that authenticates us by a header secret in ``channel.header``.
Everything refused is a ``FhirError`` whose expression names the element.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy.errors import FhirError
from subscriptions import filters as filtering
from subscriptions.topics import TOPICS

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
PROFILE = IG + "backport-subscription"
FILTER_CRITERIA = IG + "backport-filter-criteria"
PAYLOAD_CONTENT = IG + "backport-payload-content"
HEARTBEAT_PERIOD = IG + "backport-heartbeat-period"
CONTENTS = ("empty", "id-only", "full-resource")
DEFAULT_CONTENT = "id-only"  # a notification never carries more than the subscriber asked for
MAX_HEARTBEAT_S = 24 * 3600
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):\s*(\S.{0,2047})$")
# headers a subscriber may not set: ours to set (framing, content, identity of the notification)
_RESERVED = {"content-type", "content-length", "host", "transfer-encoding", "connection"}


@dataclass
class Spec:
    """A Subscription as fhirplug runs it (kept in Redis by ``registry``)."""

    id: str
    topic: str
    endpoint: str
    owner: str = ""  # the tenant (ODS code) it notifies about what it may read; "" an admin's
    filters: list[str] = field(default_factory=list)
    content: str = DEFAULT_CONTENT
    headers: list[str] = field(default_factory=list)  # "Name: value"
    heartbeat_s: int = 0  # 0: no heartbeats
    partner: str = ""  # the partner whose endpoint it is (signed-JWT delivery); "" header secret
    status: str = "requested"
    error: str = ""  # why it is in error, when it is
    base: str = ""  # the proxy's public FHIR base: how notifications name what they are about

    @property
    def resource_type(self) -> str:
        return TOPICS[self.topic].resource_type

    def parsed_filters(self) -> list[filtering.Filter]:
        return [filtering.parse(f, self.resource_type) for f in self.filters]

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Spec:
        return cls(**json.loads(raw))


def _bad(message: str, where: str, status: int = 422, code: str = "value") -> FhirError:
    return FhirError(status, message, [where], code=code)


def _ext(holder: Any, url: str) -> list[tuple[int, Any]]:
    exts = holder.get("extension") if isinstance(holder, dict) else None
    return [(i, e) for i, e in enumerate(exts or []) if isinstance(e, dict) and e.get("url") == url]


def parse(resource: Any, sid: str, owner: str, partner_of: Any, base: str = "") -> Spec:
    """``resource`` as a Spec with id ``sid`` for ``owner`` on the server ``base``;
    ``partner_of(endpoint)`` names the partner whose FHIR base the endpoint is (or None).
    Raises ``FhirError`` (422, with the element) for anything this server cannot run as asked."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Subscription":
        raise _bad("The body must be a Subscription", "Subscription", 400, "structure")
    topic = resource.get("criteria")
    if topic not in TOPICS:
        known = ", ".join(sorted(TOPICS))
        raise _bad(
            f"Subscription.criteria must be the canonical URL of a topic this server offers ({known}); "
            "criteria as a search are not supported (R4 topic-based subscriptions, Backport IG)",
            "Subscription.criteria",
            code="not-supported",
        )
    rtype = TOPICS[topic].resource_type
    texts: list[str] = []
    for i, ext in _ext(resource.get("_criteria"), FILTER_CRITERIA):
        where = f"Subscription.criteria.extension[{i}].value"
        try:
            texts.append(filtering.parse(ext.get("valueString"), rtype).text)
        except filtering.FilterError as exc:
            raise _bad(f"Filter criteria: {exc}", where) from exc
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise _bad("Subscription.channel is required", "Subscription.channel", 400, "required")
    if channel.get("type") != "rest-hook":
        raise _bad("Only rest-hook channels are offered", "Subscription.channel.type", code="not-supported")
    endpoint = channel.get("endpoint")
    headers = [h for h in channel.get("header") or [] if isinstance(h, str)]
    if len(headers) != len(channel.get("header") or []):
        raise _bad("Each channel header is a string 'Name: value'", "Subscription.channel.header")
    for i, h in enumerate(headers):
        m = _HEADER.match(h)
        if m is None or m.group(1).lower() in _RESERVED:
            raise _bad(
                "A channel header is 'Name: value' and may not set framing or content headers",
                f"Subscription.channel.header[{i}]",
            )
    partner = _endpoint(endpoint, headers, partner_of)
    payload = channel.get("payload")
    if payload is not None and payload not in ("application/fhir+json", "application/json"):
        raise _bad(
            "Notifications are sent as application/fhir+json",
            "Subscription.channel.payload",
            code="not-supported",
        )
    content = DEFAULT_CONTENT
    for i, ext in _ext(channel.get("_payload"), PAYLOAD_CONTENT):
        content = ext.get("valueCode")
        if content not in CONTENTS:
            raise _bad(
                f"Payload content is one of {', '.join(CONTENTS)}",
                f"Subscription.channel.payload.extension[{i}].value",
            )
    heartbeat = 0
    for i, ext in _ext(channel, HEARTBEAT_PERIOD):
        heartbeat = ext.get("valueUnsignedInt")
        if (
            not isinstance(heartbeat, int)
            or isinstance(heartbeat, bool)
            or not 0 <= heartbeat <= MAX_HEARTBEAT_S
        ):
            raise _bad(
                f"The heartbeat period is a number of seconds from 0 to {MAX_HEARTBEAT_S}",
                f"Subscription.channel.extension[{i}].value",
            )
    status = "off" if resource.get("status") == "off" else "requested"
    return Spec(
        id=sid,
        topic=str(topic),
        endpoint=str(endpoint),
        owner=owner,
        filters=texts,
        content=str(content),
        headers=headers,
        heartbeat_s=heartbeat,
        partner=partner or "",
        status=status,
        base=base,
    )


def _endpoint(endpoint: Any, headers: list[str], partner_of: Any) -> str | None:
    where = "Subscription.channel.endpoint"
    if not isinstance(endpoint, str) or not endpoint:
        raise _bad("Subscription.channel.endpoint is required", where, 400, "required")
    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise _bad("The endpoint is not a URL", where) from exc
    if parts.scheme not in ("https", "http") or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise _bad("The endpoint must be an http(s) URL without credentials or fragment", where)
    partner = partner_of(endpoint)
    if partner:
        return str(partner)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise _bad("An endpoint that is not a registered partner must use https", where)
    if not headers:
        raise _bad(
            "An endpoint that is not a registered partner authenticates us by a secret: "
            "give it in channel.header ('Authorization: Bearer ...')",
            "Subscription.channel.header",
            code="required",
        )
    return None


def stored_form(resource: dict[str, Any], spec: Spec, labels: list[dict[str, Any]]) -> dict[str, Any]:
    """What the store keeps: the caller's Subscription under its id, with our status, error and
    labels (the caller's own labels dropped) and the Backport profile."""
    out = dict(resource)
    out["id"] = spec.id
    meta = dict(out.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    meta["security"] = labels
    profiles = [p for p in meta.get("profile") or [] if p != PROFILE]
    meta["profile"] = [PROFILE, *profiles]
    out["meta"] = meta
    # the filters as fhirplug reads them (``Type?a=b``: the store checks them as searches, and
    # wants one; "Type?" narrows nothing, ``filters.parse``), so the stored form says what runs
    criteria = dict(out.get("_criteria") or {})
    others = [
        e
        for e in criteria.get("extension") or []
        if not (isinstance(e, dict) and e.get("url") == FILTER_CRITERIA)
    ]
    texts = spec.filters or [f"{spec.resource_type}?"]
    criteria["extension"] = [*others, *({"url": FILTER_CRITERIA, "valueString": t} for t in texts)]
    out["_criteria"] = criteria
    out["status"] = spec.status
    if spec.error:
        out["error"] = spec.error
    else:
        out.pop("error", None)
    return out
