"""The write plan: what one request asks the store to do, built once from its body.

The storage hooks amend the plan's entries; the request sent to the store is serialised from
those entries at the end, so the body is parsed once and never patched back in place.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl

from proxy.context import WriteEntry
from proxy.response import dumps

FHIR_JSON = "application/fhir+json"


@dataclasses.dataclass
class WritePlan:
    """A request's body and the writes it carries, as judged before the storage hooks."""

    kind: str  # the interaction as judged: a package upload is a transaction, a bundle its type
    raw: bytes  # the decoded body as the caller sent it
    has_body: bool
    media_type: str | None
    body: Any = None  # the parsed JSON body (or a package's transaction); None for XML, forms, none
    entries: list[WriteEntry] = dataclasses.field(default_factory=list)
    install: bool = False  # a package upload, sent to the store as a transaction at the base
    judged: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        # what each entry was when the checks judged it: hooks may narrow a url or turn a
        # PATCH into a PUT, and only those changes reach the request line or the bundle
        self.judged = [(e.method, e.url) for e in self.entries]


@dataclasses.dataclass
class Outgoing:
    """The request line and body the store is sent, before headers and base rewriting."""

    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any  # the JSON document sent, None when the caller's bytes go as they came
    media_type: str | None
    data: bytes | None


def outgoing(plan: WritePlan, method: str, path: str, query: list[tuple[str, str]]) -> Outgoing:
    """Serialise the plan's entries, as the storage hooks left them, into the store's request."""
    if plan.install:
        method, path, query = "POST", "", []
    body, media_type = plan.body, plan.media_type
    bundle: list | None = None
    for entry, (was_method, was_url) in zip(plan.entries, plan.judged, strict=True):
        if entry.index is not None:
            if bundle is None:
                bundle = list(body["entry"])  # an entry has an index only when it came from this bundle
            bundle[entry.index] = _bundle_entry(body["entry"][entry.index], entry, was_method)
            continue
        if entry.url != was_url:
            path, _, q = entry.url.partition("?")
            query = parse_qsl(q, keep_blank_values=True)
        if entry.method != was_method:
            method, body, media_type = entry.method, entry.resource, FHIR_JSON
    if bundle is not None:
        body = {**body, "entry": bundle}
    data = dumps(body) if body is not None else (plan.raw if plan.has_body else None)
    return Outgoing(method, path, list(query), body, media_type, data)


def _bundle_entry(sent: dict, entry: WriteEntry, was_method: str) -> dict:
    request = {**sent["request"], "url": entry.url, "method": entry.method}
    if entry.if_none_exist is not None:
        request["ifNoneExist"] = entry.if_none_exist
    if entry.if_match is not None:
        request["ifMatch"] = entry.if_match
    out = {**sent, "request": request}
    if entry.method != was_method:
        out["resource"] = entry.resource
    return out
