"""The FHIR pass-through: checks a request, runs the storage hooks, and relays it to the store."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.parse import urlencode

from proxy import bodies, conformance, json_shapes, merge_patch, query_checks
from proxy.auth.enforcement import authorize_entries
from proxy.context import RequestContext, StorageOutcome, WriteEntry
from proxy.errors import FhirError
from proxy.pipeline import call_guarded
from proxy.response import ProxyResponse, dumps, loads
from proxy.rewrite import replace_base, stream_replace
from proxy.store_caller import CALLER_KEY, GRANT_KEY, caller_of
from proxy.upstream import CAPITALISED, REQUEST_HEADERS, RESPONSE_HEADERS, StoreClient
from proxy.write_plan import WritePlan, outgoing

log = logging.getLogger("fhirplug.fhir")
CHUNK = 64 * 1024
INSTALL = ("ImplementationGuide", "$install")  # package upload: POST [base]/ImplementationGuide/$install


class FhirPassthrough:
    def __init__(self, pm, store: StoreClient, max_body_bytes: int):
        self.pm = pm
        self.store = store
        self.max_body_bytes = max_body_bytes

    def handle(self, ctx: RequestContext, raw: bytes, content_encoding: str | None) -> ProxyResponse:
        """Check a request, run the storage hooks on its writes, send it to the store, relay the answer."""
        plan = self._plan(ctx, raw, content_encoding)
        if isinstance(plan, ProxyResponse):
            return plan  # answered without the store (e.g. an earlier identical submission)
        self._run_storage_hooks(ctx, plan.entries)
        method, path, query, headers, data = self._upstream_request(ctx, plan)
        if ctx.companion_writes:
            return self._with_companions(ctx, plan, method, path, query, headers, data)
        upstream = self.store.send(method, path, query, headers, data)
        return self._relay(ctx, plan.entries, upstream, headers)

    def _with_companions(
        self,
        ctx: RequestContext,
        plan: WritePlan,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        data: bytes | None,
    ) -> ProxyResponse:
        """The caller's write and the rule-driven writes plugins added, in ONE store transaction
        (all stored or none); answered as the caller's own write, the companions' entries left out."""
        if plan.kind == "batch":
            raise FhirError(
                422,
                "A write in this batch needs another resource changed with it (a request its dispense "
                "completes, a record a care relationship shares): a batch stores its entries one by "
                "one, so send it as a transaction or on its own",
                ["Bundle.type"],
                code="business-rule",
            )
        if ctx.completion_grants:
            headers[GRANT_KEY] = ",".join(sorted(ctx.completion_grants))
        companions = ctx.companion_writes
        if plan.kind == "transaction" and data is not None:
            body = loads(data)
            asked = len(body.get("entry") or [])
            body["entry"] = [*(body.get("entry") or []), *companions]
            upstream = self.store.send(method, path, query, headers, dumps(body))
            response = self._relay(ctx, plan.entries, upstream, headers)
            answer = response.resource if response.is_json and response.status < 300 else None
            if isinstance(answer, dict) and isinstance(answer.get("entry"), list):
                answer["entry"] = answer["entry"][:asked]
                response.resource = answer
            return response
        # a PATCH a plugin resolved into the update it amounts to goes as that update
        plain_write = plan.kind in ("create", "update") or (
            plan.kind == "patch" and len(plan.entries) == 1 and plan.entries[0].method == "PUT"
        )
        if not plain_write or len(plan.entries) != 1 or data is None:
            raise FhirError(500, "Rule-driven writes go only with a create, an update or a transaction")
        entry = plan.entries[0]
        request: dict[str, str] = {"method": method, "url": path + (f"?{urlencode(query)}" if query else "")}
        for header, name in (("if-match", "ifMatch"), ("if-none-exist", "ifNoneExist")):
            if (value := headers.pop(header, None)) is not None:
                request[name] = value
        first: dict = {"resource": loads(data), "request": request}
        if entry.full_url:
            first["fullUrl"] = entry.full_url
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [first, *companions]}
        headers["content-type"] = "application/fhir+json; charset=utf-8"
        upstream = self.store.send("POST", "", [], headers, dumps(bundle))
        return self._relay(ctx, plan.entries, self._as_plain_write(ctx, upstream, headers), headers)

    def _as_plain_write(self, ctx: RequestContext, upstream, headers: dict[str, str]) -> _Answer:
        """A transaction's answer read as the answer to its first entry, a plain create or update:
        its status, Location, ETag and Last-Modified, and the stored resource read as the caller."""
        try:
            data = upstream.read()
        finally:
            upstream.release_conn()
        content_type = upstream.headers.get("content-type") or "application/fhir+json"
        if upstream.status >= 300:
            return _Answer(upstream.status, {"content-type": content_type}, data)
        first = ((loads(data).get("entry") or [{}])[0] or {}).get("response") or {}
        status = int(str(first.get("status", "200")).split(" ", 1)[0] or 200)
        location = str(first.get("location") or "")
        out = {"content-type": content_type}
        if location:
            out["location"] = f"{self.store.base_url}/{location}"
        for key, name in (("etag", "etag"), ("lastModified", "last-modified")):
            if first.get(key):
                out[name] = str(first[key])
        if not location or "return=minimal" in (ctx.request.header("prefer") or ""):
            return _Answer(status, out, b"")
        read_headers = {"accept": "application/fhir+json", CALLER_KEY: headers[CALLER_KEY]}
        stored = self.store.send("GET", location, [], read_headers, None)
        try:
            body = stored.read()
        finally:
            stored.release_conn()
        return _Answer(status, out, body if stored.status == 200 else b"")

    def _plan(
        self, ctx: RequestContext, raw: bytes, content_encoding: str | None
    ) -> WritePlan | ProxyResponse:
        """Decode and check the body, and read the writes it carries (running the bundle hook)."""
        req = ctx.request
        inter = ctx.interaction
        raw = bodies.decode_body(raw, content_encoding, self.max_body_bytes)
        query_checks.check(req.query, req.content_type, raw)
        body: Any = None
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
                mt = bodies.patch_by_shape(inter, mt, body)
                if mt == bodies.MERGE_PATCH:
                    body = ctx.body = merge_patch.to_json_patch(body, _patched_now(ctx))
                    mt = bodies.JSON_PATCH
                json_shapes.check(body, mt)  # before any plugin reads it
            if inter.kind == "transaction":
                answered = self._bundle_hook(ctx, body)
                if answered is not None:
                    return answered
                entries = self._bundle_entries(ctx, body)
            else:
                entries = bodies.resource_entries(inter, req.path, query_text, body, mt)
        elif inter.kind == "delete":
            entries = bodies.resource_entries(inter, req.path, query_text, None, mt)
        if ctx.interaction.kind == "create" and entries:
            entries[0].if_none_exist = req.header("if-none-exist")
        plan = WritePlan(ctx.interaction.kind, raw, has_body, mt, body, entries, install)
        query_checks.check_conditional_updates(ctx.store, entries)
        return plan

    def _bundle_hook(self, ctx: RequestContext, body: dict) -> ProxyResponse | None:
        btype, _ = bodies.bundle_entries(body, self._bases(ctx))
        ctx.interaction = dataclasses.replace(ctx.interaction, kind=btype)
        ctx.caller_entries = len(body.get("entry") or [])
        authorize_entries(ctx, body)
        refusal = call_guarded(
            self.pm.hook.fhirplug_before_bundle, "fhirplug_before_bundle", ctx=ctx, bundle=body
        )
        if isinstance(refusal, ProxyResponse):
            return refusal
        if refusal is not None:
            raise refusal if isinstance(refusal, FhirError) else FhirError(500, "Unexpected refusal")
        return None

    def _bundle_entries(self, ctx: RequestContext, body: dict) -> list[WriteEntry]:
        # read after the bundle hook, which may have amended request urls or added entries
        _, entries = bodies.bundle_entries(body, self._bases(ctx))
        return entries

    def _bases(self, ctx: RequestContext) -> tuple[str, str]:
        return (ctx.public_base, self.store.base_url)  # the only absolute entry URLs accepted

    def _run_storage_hooks(self, ctx: RequestContext, entries: list[WriteEntry]) -> None:
        """Let every plugin judge (and amend) each write; the first refusal refuses the request."""
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

    def _upstream_request(
        self, ctx: RequestContext, plan: WritePlan
    ) -> tuple[str, str, list[tuple[str, str]], dict[str, str], bytes | None]:
        """The method, path, query, headers and body bytes the store is sent for this plan."""
        req = ctx.request
        public, internal = ctx.public_base, self.store.base_url
        out = outgoing(plan, req.method, req.path, list(req.query))
        data = out.data
        verbatim = ctx.interaction.operation in bodies.PASS_THROUGH_OPERATIONS and not plan.entries
        sent_xml = ctx.sent_body if verbatim and plan.has_body and ctx.upstream_body is None else None
        if verbatim and plan.has_body:
            # the caller's bytes as they came: the store's Line[n] Col[m] then point into the
            # caller's own document, not into our one-line re-serialisation (an XML body's
            # plugins read its JSON, the same content: proxy.xml_intake)
            data = sent_xml[0] if sent_xml is not None else plan.raw
        if verbatim and ctx.upstream_body is not None:
            data = ctx.upstream_body[0]
        if data:
            # callers write our public base into fullUrls and references; the store knows its own
            data = data.replace(public.encode(), internal.encode())

        entries = plan.entries
        headers = {h: v for h in REQUEST_HEADERS if (v := req.header(h)) is not None}
        if out.body is not None:
            headers["content-type"] = (
                out.media_type if out.media_type == bodies.JSON_PATCH else "application/fhir+json"
            ) + "; charset=utf-8"
        if verbatim and ctx.upstream_body is not None:
            headers["content-type"] = ctx.upstream_body[1]
        if sent_xml is not None:
            headers["content-type"] = sent_xml[1]
        if plan.kind == "create" and entries and entries[0].if_none_exist:
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
        query_pairs = [(k, v) for k, v in out.query if k not in ctx.upstream_query_withheld]
        # the store's own tenancy line acts for the client we authenticated, never for a header
        headers[CALLER_KEY] = caller_of(ctx.client.role, ctx.client.ods)
        query = [(k, replace_base(v, public, internal)) for k, v in query_pairs + ctx.upstream_query]
        return out.method, out.path, query, headers, data

    def _relay(
        self, ctx: RequestContext, entries: list[WriteEntry], upstream, sent_headers: dict[str, str]
    ) -> ProxyResponse:
        """The store's answer for the caller: bases rewritten, writes read whole for the
        after-storage hooks, large reads streamed."""
        req = ctx.request
        public, internal = ctx.public_base, self.store.base_url
        status = upstream.status
        if status == 409 and (req.header("if-match") or sent_headers.get("if-match")):
            # HAPI reports a stale If-Match as 409 Conflict; FHIR R4 (http.html#concurrency)
            # says 412 Precondition Failed, which is what callers' retry logic keys on.
            status = 412
        out_headers = {}
        for h in RESPONSE_HEADERS:
            v = upstream.headers.get(h)
            if v is not None:
                out_headers[CAPITALISED[h]] = replace_base(v, internal, public)
        if ctx.caller_entries is not None:
            # a transaction's or batch's answer: HAPI names a Bundle here it never stored (404)
            out_headers.pop("Location", None)
            out_headers.pop("Content-Location", None)

        if entries:
            # writes are small and the storage hooks need the answer whole
            try:
                data = upstream.read()
            finally:
                upstream.release_conn()
            data = data.replace(internal.encode(), public.encode())
            response = ProxyResponse(status, out_headers, (data,))
            self._after_storage(ctx, entries, response)
            if ctx.caller_entries is not None:
                _as_the_caller_sent_it(response, ctx.caller_entries)
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


def _as_the_caller_sent_it(response: ProxyResponse, sent: int) -> None:
    """A transaction or batch answer with one entry per entry the caller sent, in its order (the
    entries plugins added, after the caller's, are theirs: an audit event, an outbox record)."""
    if response.status >= 300 or not response.is_json:
        return
    bundle = response.resource
    if isinstance(bundle, dict) and isinstance(bundle.get("entry"), list) and len(bundle["entry"]) > sent:
        bundle["entry"] = bundle["entry"][:sent]
        response.resource = bundle


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


def _patched_now(ctx: RequestContext) -> dict | None:
    """The resource a merge-patch PATCH names, as the caller may see it (the store's tenancy line
    applies: another tenant's resource reads as absent); None when there is not exactly one."""
    inter, client = ctx.interaction, ctx.client
    if not inter.resource_type:
        return None
    seen_as = ctx.store.as_caller(client.role, client.ods)
    if inter.id:
        return seen_as.read(inter.resource_type, inter.id)
    found = seen_as.search(inter.resource_type, list(ctx.request.query), count=2)  # a conditional patch
    return found[0] if len(found) == 1 else None


class _Answer:
    """A store answer already read, in the shape the relay reads (status, headers, body)."""

    def __init__(self, status: int, headers: dict[str, str], data: bytes):
        self.status, self.headers, self._data = status, headers, data

    def read(self, amount: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data

    def release_conn(self) -> None:
        return None

    def close(self) -> None:
        return None
