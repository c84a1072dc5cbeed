"""What every hook is given: one small, Flask-free object per request.

Plugins read the client, the interaction and the request from here. What one plugin finds out
for the others is typed: ``message`` (a :class:`Message`), set once by the plugin that declares
``provides = ("message",)`` and read by those that declare ``requires = ("message",)``; the
plugin manager refuses at start a list where a requirement is not provided by an earlier plugin.
What a plugin remembers between its own hooks goes in ``notes(<its dataclass>)``. Only
``upstream_*``, ``render_as``, ``message``, notes and ``state`` are meant to be written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from proxy.auth.scopes import ScopeSet

T = TypeVar("T")


@dataclass(frozen=True)
class Client:
    """Who is calling. Filled in by authentication; anonymous until then."""

    id: str | None = None
    ods: str | None = None  # the client's organisation (ODS code): its tenant
    role: str | None = None  # spoke, hub, validator, reader or admin
    scopes: ScopeSet | None = None  # what its access token allows (SMART system scopes)

    @property
    def authenticated(self) -> bool:
        return self.id is not None


ANONYMOUS = Client()


@dataclass(frozen=True)
class Interaction:
    """A FHIR REST interaction, as the proxy understood the URL and method.

    ``kind`` is one of the FHIR RESTful interaction names: read, vread, update, patch, delete,
    history-instance, history-type, history-system, create, search-type, search-system,
    capabilities, transaction, batch, operation, page (a search page continuation).
    """

    kind: str
    method: str
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    operation: str | None = None  # "$validate" etc. for kind == "operation"
    conditional: bool = False  # conditional create/update/patch/delete

    @property
    def is_write(self) -> bool:
        return self.kind in {"create", "update", "patch", "delete", "transaction", "batch"}


@dataclass(frozen=True)
class RequestView:
    """Read-only view of the incoming HTTP request."""

    method: str
    full_path: str  # as received: "/fhir/Patient/1/_history"
    path: str  # below the FHIR base, without a leading slash: "Patient/1/_history"
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    content_type: str | None
    remote_addr: str | None

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def make_request_view(
    method: str,
    full_path: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    content_type: str | None,
    remote_addr: str | None,
) -> RequestView:
    lowered = MappingProxyType({k.lower(): v for k, v in headers.items()})
    return RequestView(method, full_path, path, tuple(query), lowered, content_type, remote_addr)


@dataclass(frozen=True)
class Message:
    """A message a classifier recognised in a Bundle (for hub-and-spoke, ``hubspoke.messages``)."""

    kind: str  # what the message is, e.g. "spoke-to-hub"
    digest: str  # SHA-256 of the message as it arrived, before any plugin amended it
    sender_ods: str | None = None  # the sending client's organisation
    sender_client: str | None = None  # the sending client's id


@dataclass
class RequestContext:
    """One request's context. ``request_id`` is set by the request-id plugin (or generated)."""

    request: RequestView
    interaction: Interaction
    client: Client = ANONYMOUS
    request_id: str | None = None
    public_base: str = ""
    upstream_headers: dict[str, str | None] = field(default_factory=dict)  # None: withhold
    # query parameters added to what the store is sent (e.g. a tenant's narrowing of a search)
    upstream_query: list[tuple[str, str]] = field(default_factory=list)
    # names of the caller's query parameters the store is not sent (e.g. _format for a tenant)
    upstream_query_withheld: set[str] = field(default_factory=set)
    # "xml": the JSON answer is rendered as FHIR XML by the proxy after every response hook
    # (the store was asked for JSON so that the hooks could judge it)
    render_as: str | None = None
    # a transaction or batch: how many entries the caller sent (plugins may add entries of their
    # own, an audit event say; the answer has one entry per entry the caller sent)
    caller_entries: int | None = None
    # bytes (and their media type) the store is sent instead of the caller's body, for an
    # operation that stores nothing (a plugin wrapping what $validate is asked to validate)
    upstream_body: tuple[bytes, str] | None = None
    # the message the Bundle carries, once classified (``provides = ("message",)``); None: no message
    message: Message | None = None
    state: dict[str, Any] = field(default_factory=dict)
    _notes: dict[type, Any] = field(default_factory=dict, repr=False)
    started_at: float = field(default_factory=time.perf_counter)
    # the parsed write body (a resource, a Bundle, a JSON Patch), once read; read it, don't change it
    body: Any = None
    # look-ups in the store on a plugin's behalf (``proxy.store_reader.StoreReader``)
    store: Any = None
    # rule-driven writes that must happen in the SAME store transaction as the caller's write
    # (a request completed by a dispense, a reader label a care relationship grants): Bundle
    # entries, judged by the rule that added them, not as the caller's own writes; a plain write
    # that has any is sent to the store as a transaction and answered as the plain write
    companion_writes: list[dict[str, Any]] = field(default_factory=list)
    # ``Type/id`` of resources a companion write changes that the caller only reads: signed to the
    # store (``X-Fhirplug-Grant``) so that its tenancy line admits exactly those changes
    completion_grants: set[str] = field(default_factory=set)
    # reads the request body (set by the app); use ``request_body()``, which reads it once
    body_source: Callable[[], bytes] | None = field(default=None, repr=False)
    _raw_body: bytes | None = field(default=None, repr=False)
    # the body as the caller sent it, and its Content-Type, when the proxy read it in another
    # syntax (FHIR XML, converted to JSON before any plugin runs: ``proxy.xml_intake``)
    sent_body: tuple[bytes, str] | None = field(default=None, repr=False)

    def request_body(self) -> bytes:
        """The request body as sent, gzip undone, within FHIRPLUG_MAX_BODY_BYTES (413 past it,
        415 for an unknown Content-Encoding), read on first use and kept: for a plugin that serves
        an operation itself from ``fhirplug_request``, before the proxy would read it. Empty when
        there is no body (or no reader, in a unit test that gave none)."""
        if self._raw_body is None:
            self._raw_body = self.body_source() if self.body_source is not None else b""
        return self._raw_body

    def replace_body(self, data: bytes, content_type: str) -> None:
        """From now on the body is ``data`` of ``content_type`` for every reader (the request view's
        Content-Type included); what the caller sent is kept in ``sent_body``. For the proxy's XML
        intake, before any plugin has read the body."""
        if self.sent_body is None:
            self.sent_body = (self.request_body(), self.request.content_type or "")
        headers = {**self.request.headers, "content-type": content_type}
        self.request = dataclasses.replace(
            self.request, content_type=content_type, headers=MappingProxyType(headers)
        )
        self._raw_body = data

    def notes(self, kind: type[T]) -> T:
        """This request's notes of type ``kind`` (a plugin's own dataclass, all fields defaulted),
        made on first use: what a plugin remembers between its hooks, typed, and keyed by its class
        so that no other plugin reads or overwrites it by accident."""
        found = self._notes.get(kind)
        if found is None:
            found = self._notes[kind] = kind()
        return found

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started_at) * 1000.0


@dataclass
class WriteEntry:
    """One resource being written: a plain REST write, or one entry of a transaction or batch.

    Hooks may amend ``resource`` in place; the proxy serialises what it holds after the hooks.
    """

    method: str
    url: str  # "Patient", "Patient/1", "Patient?identifier=x"; hooks may narrow a conditional url
    resource: dict | None
    index: int | None = None  # position in Bundle.entry; None for a plain REST write
    full_url: str | None = None
    content_type: str | None = None  # for PATCH: JSON Patch or FHIRPath Patch
    if_none_exist: str | None = None  # a conditional create's criteria; hooks may narrow them
    if_match: str | None = None  # the version a write must still find (ETag), set by a hook

    @property
    def resource_id(self) -> str | None:
        """The id in the url (``Task/1``), None for a create or a conditional write."""
        path = self.url.split("?", 1)[0].split("/")
        return path[1] if len(path) >= 2 and path[1] else None

    @property
    def conditional(self) -> bool:
        """Names its resource by search criteria. ``Task/1?_format=json`` is not conditional: the
        store writes Task/1 whatever the query says, so it must be judged as a write by id."""
        return "?" in self.url and self.resource_id is None

    @property
    def resource_type(self) -> str | None:
        if self.resource and self.method != "PATCH":
            return self.resource.get("resourceType")
        return self.url.split("?", 1)[0].split("/", 1)[0] or None

    @property
    def expression_root(self) -> str:
        """Where this resource stands in the request body, as FHIRPath."""
        if self.index is None:
            return self.resource_type or "Resource"
        return f"Bundle.entry[{self.index}].resource"


@dataclass(frozen=True)
class StorageOutcome:
    """What the store answered for one WriteEntry."""

    status: int
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    resource: dict | None = None  # the stored resource, or an OperationOutcome, when returned

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300
