"""The FHIR pass-through: checks a request, runs the storage hooks, and relays it to the store."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import parse_qsl, urlencode

from proxy import bodies, conformance, json_shapes, query_checks
from proxy.auth.enforcement import authorize_entries
from proxy.context import RequestContext, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.pipeline import call_guarded
from proxy.response import ProxyResponse, dumps
from proxy.rewrite import replace_base, stream_replace
from proxy.store_caller import CALLER_KEY, caller_of
from proxy.upstream import CAPITALISED, REQUEST_HEADERS, RESPONSE_HEADERS, StoreClient

log = logging.getLogger("fhirplug.fhir")
CHUNK = 64 * 1024
INSTALL = ("ImplementationGuide", "$install")  # package upload: POST [base]/ImplementationGuide/$install


class FhirPassthrough:
    def __init__(self, pm, store: StoreClient, max_body_bytes: int):
        self.pm = pm
        self.store = store
        self.max_body_bytes = max_body_bytes

    def handle(self, ctx: RequestContext, raw: bytes, content_encoding: str | None) -> ProxyResponse:
        req = ctx.request
        inter = ctx.interaction
        public, internal = ctx.public_base, self.store.base_url
        raw = bodies.decode_body(raw, content_encoding, self.max_body_bytes)
        query_checks.check(req.query, req.content_type, raw)
        body = None
        install = inter.kind == "operation" and (inter.resource_type, inter.operation) == INSTALL
        if install:
            # a package becomes one transaction of conditional updates, checked like any other
            body = ctx.body = conformance.install_body(raw, req.content_type)
            ctx.interaction = inter = dataclasses.replace(inter, kind="transaction", operation=None)
            has_body, mt = True, "application/fhir+json"
        else:
            has_body = bool(raw.strip())
            mt = bodies.check_body_media_type(inter, req.content_type, has_body)
        if inter.kind in ("create", "update", "transaction") and not has_body:
            raise FhirError(400, f"{inter.kind} needs a body")

        entries: list[WriteEntry] = []
        query_text = urlencode(list(req.query))
        if has_body and mt not in bodies.XML_TYPES and mt != bodies.FORM:
            if body is None:
                body = ctx.body = bodies.parse_json(raw)
                json_shapes.check(body, mt)  # before any plugin reads it
            if inter.kind == "transaction":
                bases = (public, internal)  # the only absolute entry URLs accepted
                btype, entries = bodies.bundle_entries(body, bases)
                ctx.interaction = inter = dataclasses.replace(inter, kind=btype)
                authorize_entries(ctx, body)
                refusal = call_guarded(
                    self.pm.hook.fhirplug_before_bundle, "fhirplug_before_bundle", ctx=ctx, bundle=body
                )
                if isinstance(refusal, ProxyResponse):
                    return refusal  # answered without the store (e.g. an earlier identical submission)
                if refusal is not None:
                    raise refusal if isinstance(refusal, FhirError) else FhirError(500, "Unexpected refusal")
                # the bundle hook may have amended request urls or added entries
                btype, entries = bodies.bundle_entries(body, bases)
            else:
                entries = bodies.resource_entries(inter, req.path, query_text, body, mt)
        elif inter.kind == "delete":
            entries = bodies.resource_entries(inter, req.path, query_text, None, mt)
        if inter.kind == "create" and entries:
            entries[0].if_none_exist = req.header("if-none-exist")
        original = [(e.method, e.url) for e in entries]
        query_checks.check_conditional_updates(ctx.store, entries)

        for entry in entries:
            try:
                refusal = call_guarded(
                    self.pm.hook.fhirplug_before_storage, "fhirplug_before_storage", ctx=ctx, entry=entry
                )
            except FhirError as raised:
                refusal = raised
            if refusal is not None:
                if not isinstance(refusal, FhirError):
                    raise FhirError(500, "A plugin refused the write with an unexpected value")
                raise refusal.rebased(entry.expression_root) if entry.index is not None else refusal

        path, query_pairs = ("", []) if install else (req.path, list(req.query))
        method = "POST" if install else req.method
        for entry, (was_method, was_url) in zip(entries, original, strict=True):
            if entry.index is not None:  # hooks may have narrowed a url, or turned a PATCH into a PUT
                assert body is not None  # an entry has an index only when it came from this bundle
                request = body["entry"][entry.index]["request"]
                request["url"], request["method"] = entry.url, entry.method
                if entry.if_none_exist is not None:
                    request["ifNoneExist"] = entry.if_none_exist
                if entry.if_match is not None:
                    request["ifMatch"] = entry.if_match
                if entry.method != was_method:
                    body["entry"][entry.index]["resource"] = entry.resource
                continue
            if entry.url != was_url:
                path, _, q = entry.url.partition("?")
                query_pairs = parse_qsl(q, keep_blank_values=True)
            if entry.method != was_method:
                method, body, mt = entry.method, entry.resource, "application/fhir+json"

        out_body = dumps(body) if body is not None else (raw if has_body else None)
        if out_body:
            # callers write our public base into fullUrls and references; the store knows its own
            out_body = out_body.replace(public.encode(), internal.encode())

        headers = {h: v for h in REQUEST_HEADERS if (v := req.header(h)) is not None}
        if body is not None:
            headers["content-type"] = (
                mt if mt == bodies.JSON_PATCH else "application/fhir+json"
            ) + "; charset=utf-8"
        if inter.kind == "create" and entries and entries[0].if_none_exist:
            headers["if-none-exist"] = entries[0].if_none_exist
        if entries and entries[0].index is None and entries[0].if_match and not req.header("if-match"):
            headers["if-match"] = entries[0].if_match
        # one spelling per header: a plugin's "X-Request-ID" must replace, not join, ours;
        # None withholds the caller's header from the store
        for k, v in ctx.upstream_headers.items():
            if v is None:
                headers.pop(k.lower(), None)
            else:
                headers[k.lower()] = v
        query_pairs = [(k, v) for k, v in query_pairs if k not in ctx.upstream_query_withheld]
        # the store's own tenancy line acts for the client we authenticated, never for a header
        headers[CALLER_KEY] = caller_of(ctx.client.role, ctx.client.ods)
        query = [(k, replace_base(v, public, internal)) for k, v in query_pairs + ctx.upstream_query]

        upstream = self.store.send(method, path, query, headers, out_body)
        status = upstream.status
        if status == 409 and (req.header("if-match") or headers.get("if-match")):
            # HAPI reports a stale If-Match as 409 Conflict; FHIR R4 (http.html#concurrency)
            # says 412 Precondition Failed, which is what callers' retry logic keys on.
            status = 412
        out_headers = {}
        for h in RESPONSE_HEADERS:
            v = upstream.headers.get(h)
            if v is not None:
                out_headers[CAPITALISED[h]] = replace_base(v, internal, public)

        if entries:
            # writes are small and the storage hooks need the answer whole
            try:
                data = upstream.read()
            finally:
                upstream.release_conn()
            data = data.replace(internal.encode(), public.encode())
            response = ProxyResponse(status, out_headers, (data,))
            self._after_storage(ctx, entries, response)
            return response

        # Most answers fit in one piece: send those whole, with a Content-Length, in one write.
        # Only a body larger than that is relayed as it arrives.
        first = upstream.read(CHUNK)
        more = upstream.read(CHUNK) if first else b""
        if not more:
            upstream.release_conn()
            data = first.replace(internal.encode(), public.encode())
            if req.method != "HEAD":
                out_headers["Content-Length"] = str(len(data))
            return ProxyResponse(status, out_headers, (data,))
        chunks = _stream(upstream, (first, more))
        return ProxyResponse(status, out_headers, stream_replace(chunks, internal.encode(), public.encode()))

    def _after_storage(self, ctx: RequestContext, entries: list[WriteEntry], response: ProxyResponse):
        try:
            outcomes = _outcomes(entries, response)
        except Exception:
            log.exception("could not read the store's answer for after-storage hooks")
            return
        for entry, outcome in zip(entries, outcomes, strict=True):
            try:
                self.pm.hook.fhirplug_after_storage(ctx=ctx, entry=entry, outcome=outcome)
            except Exception:
                # the write is durable: a 5xx now would invite a duplicate resubmission
                log.exception(
                    "plugin failed in fhirplug_after_storage",
                    extra={"fields": {"request_id": ctx.request_id}},
                )


def _outcomes(entries: list[WriteEntry], response: ProxyResponse) -> list[StorageOutcome]:
    parsed = response.resource if response.is_json else None
    if entries[0].index is None or response.status >= 300 or not parsed:
        h = response.headers
        one = StorageOutcome(
            response.status,
            h.get("Location") or h.get("Content-Location"),
            h.get("ETag"),
            h.get("Last-Modified"),
            parsed,
        )
        return [one for _ in entries]
    resp_entries = parsed.get("entry") or []
    out = []
    for entry in entries:
        assert entry.index is not None  # the first has one, so all came from one bundle, each with one
        e = resp_entries[entry.index] if entry.index < len(resp_entries) else {}
        r = e.get("response") or {}
        status = int(str(r.get("status", "500")).split(" ", 1)[0] or 500)
        out.append(
            StorageOutcome(
                status,
                r.get("location"),
                r.get("etag"),
                r.get("lastModified"),
                e.get("resource") or r.get("outcome"),
            )
        )
    return out


def _stream(upstream, head: tuple[bytes, ...]):
    complete = False
    try:
        yield from head
        while chunk := upstream.read(CHUNK):
            yield chunk
        complete = True
    finally:
        if complete:
            upstream.release_conn()
        else:
            # the caller went away mid-body: this connection is in an unknown state, drop it
            upstream.close()
