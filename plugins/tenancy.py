"""Tenant scoping: each organisation sees and changes only its own hub-and-spoke data.

Every resource a spoke or hub client writes is labelled, in ``meta.security``, with the ODS
codes of the organisations that may see it: the writer, and for a Task its requester and owner.
The other resources of a transaction travel with its Task and get the Task's labels, so the hub
sees the MedicationRequests and Patients a spoke sent it, and the spoke the MedicationDispenses
the hub sent back. Then:

- searches are narrowed in the store (``_security=<system>|<ODS>``), so paging and totals hold;
- whatever still comes back (``_include``, ``_revinclude``, history, pages, batch reads) is
  filtered on the way out, and a read of another tenant's resource answers 404, as if it did
  not exist;
- a write into another tenant's resource answers 403, and conditional writes are narrowed so
  they can only ever match the caller's own resources.

Roles: ``admin`` is unrestricted; ``reader`` reads everything and writes nothing; ``validator``
manages conformance resources and runs ``$validate``; ``spoke`` and ``hub`` are tenants.
Conformance resources (profiles, value sets, code systems) are shared reading for everyone.
"""

from __future__ import annotations

import os
import re
import uuid
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlencode

from proxy import canonical
from proxy.conformance import CONFORMANCE_TYPES
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.interactions import parse_entry
from proxy.response import dumps, loads

TENANT_SYSTEM = "https://fhirplug.org/fhir/CodeSystem/tenant"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
CONFORMANCE = CONFORMANCE_TYPES  # shared reading for every role
TENANT_ROLES = frozenset({"spoke", "hub"})
NOT_FHIR = frozenset({"health", "oauth", "unknown", "capabilities"})
READS = frozenset(
    {"read", "vread", "history-instance", "history-type", "history-system", "page"}
    | {"search-type", "search-system", "search-compartment"}
)
WRITES = frozenset({"create", "update", "patch", "delete", "transaction", "batch"})
DATA_FREE_OPERATIONS = frozenset({"$validate"})
PROXY_CHECKS_ENV = "FHIRPLUG_TENANCY_PROXY_CHECKS"
REFUSED_PARAMS = frozenset({"_has", "_filter", "_list", "_query"})
CONDITIONAL_READ = ("if-none-match", "if-modified-since")
_LITERAL_REF = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")
_ORG_URL = re.compile(r"(?:^|/)Organization/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def forbidden(message: str, expression: list[str] | None = None) -> FhirError:
    return FhirError(403, message, expression or [], code="forbidden")


# ---------------------------------------------------------------- labels


def tenants_of(resource: dict) -> set[str]:
    labels = (resource.get("meta") or {}).get("security") or []
    return {s.get("code") for s in labels if isinstance(s, dict) and s.get("system") == TENANT_SYSTEM}


def visible_to(resource: dict, ods: str) -> bool:
    rtype = resource.get("resourceType")
    return rtype in CONFORMANCE or rtype == "OperationOutcome" or ods in tenants_of(resource)


def label(resource: dict, tenants: set[str]) -> None:
    """Replace whatever tenant labels the caller sent with ours (a caller cannot share by label)."""
    meta = resource.setdefault("meta", {})
    others = [s for s in meta.get("security") or [] if s.get("system") != TENANT_SYSTEM]
    meta["security"] = others + [{"system": TENANT_SYSTEM, "code": t} for t in sorted(tenants)]


def narrowing(ods: str) -> tuple[str, str]:
    return ("_security", f"{TENANT_SYSTEM}|{ods}")


def _narrow_url(url: str, ods: str) -> str:
    name, value = narrowing(ods)
    return f"{url}{'&' if '?' in url else '?'}{name}={quote(value, safe='')}"


# ---------------------------------------------------------------- organisations


def ods_of_organization(org: dict | None) -> str | None:
    for ident in (org or {}).get("identifier") or []:
        if ident.get("system") == ODS_SYSTEM and ident.get("value"):
            return ident["value"]
    return None


def ods_of_reference(ref: dict | None, bundle: dict | None, store) -> str | None:
    """The ODS code a Reference names: by identifier, by a fullUrl in the Bundle, or in the store."""
    if not isinstance(ref, dict):
        return None
    ident = ref.get("identifier") or {}
    if ident.get("system") == ODS_SYSTEM and ident.get("value"):
        return ident["value"]
    target = ref.get("reference")
    if not isinstance(target, str):
        return None
    for e in (bundle or {}).get("entry") or []:
        if e.get("fullUrl") == target and (e.get("resource") or {}).get("resourceType") == "Organization":
            return ods_of_organization(e["resource"])
    m = _ORG_URL.search(target)
    if m and store is not None:
        return ods_of_organization(store.read("Organization", m.group(1)))
    return None


def task_tenants(task: dict, bundle: dict | None, store) -> set[str]:
    return {
        ods
        for field in ("requester", "owner")
        if (ods := ods_of_reference(task.get(field), bundle, store)) is not None
    }


# ---------------------------------------------------------------- the hooks


class Tenancy:
    """``proxy_checks`` False (``FHIRPLUG_TENANCY_PROXY_CHECKS=off``, read once when the plugin is
    made) leaves only the labelling of writes and the role rules: for the security tests that
    prove the store's own line stops every attack alone. Never in production."""

    def __init__(self, proxy_checks: bool | None = None):
        if proxy_checks is None:
            proxy_checks = _switch(os.environ.get(PROXY_CHECKS_ENV, "on"))
        self.proxy_checks = proxy_checks

    @hookimpl
    def fhirplug_request(self, ctx):
        i = ctx.interaction
        role = ctx.client.role
        if i.kind in NOT_FHIR or role == "admin":
            return None
        rtype = i.resource_type
        if role in TENANT_ROLES and ctx.client.ods and self.proxy_checks:
            # first, so that even a refusal below is answered in the representation asked for
            _representation(ctx)
        if i.kind == "operation":
            if i.operation in DATA_FREE_OPERATIONS and i.id is None:
                return None
            if role == "validator" and (rtype, i.operation) == ("ImplementationGuide", "$install"):
                return None
            raise forbidden(f"Operation {i.operation} is not open to the {role} role")
        if role == "reader":
            if i.kind in WRITES:
                raise forbidden("The reader role cannot write")
            return None
        if role == "validator":
            if i.kind in ("transaction", "batch"):
                return None  # every entry must be conformance content: checked in fhirplug_before_bundle
            if rtype not in CONFORMANCE:
                raise forbidden(
                    "The validator role works with conformance resources (StructureDefinition, "
                    "ValueSet, CodeSystem, ...) and $validate only"
                )
            return None
        if role not in TENANT_ROLES or not ctx.client.ods:
            raise forbidden(f"No tenant for this client (role {role!r}, ODS {ctx.client.ods!r})")
        if i.kind in WRITES and rtype in CONFORMANCE:
            raise forbidden(f"{rtype} is shared conformance content: only validators and admins change it")
        if not self.proxy_checks:
            return None
        refuse_oracle_params(ctx.request.query)
        if i.kind in ("search-type", "search-system", "search-compartment") and rtype not in CONFORMANCE:
            ctx.upstream_query.append(narrowing(ctx.client.ods))
        if i.kind in ("read", "vread"):
            # asked of the store, a conditional read answers 304 for an id it holds, whoever's it
            # is: the store is asked for the resource itself, and the condition judged here
            asked = {h: v for h in CONDITIONAL_READ if (v := ctx.request.header(h)) is not None}
            if asked:
                ctx.state["tenancy.conditional"] = asked
                for h in asked:
                    ctx.upstream_headers[h] = None
        return None

    @hookimpl
    def fhirplug_before_bundle(self, ctx, bundle):
        if ctx.client.role == "validator":
            for i, e in enumerate(bundle.get("entry") or []):
                target = canonical.parse_entry_url((e.get("request") or {}).get("url"), i)
                if target.segments[0] not in CONFORMANCE:
                    raise forbidden(
                        "The validator role changes conformance resources only",
                        [f"Bundle.entry[{i}].request.url"],
                    )
            return None
        if ctx.client.role not in TENANT_ROLES:
            return None
        ods = ctx.client.ods
        tenants = {ods}
        entries = bundle.get("entry") or []
        # the entries the caller sent, as against those plugins add after us (outbox records)
        ctx.state["tenancy.caller_entries"] = {id(e) for e in entries}
        for index, e in enumerate(entries):
            req = e.get("request") or {}
            method = str(req.get("method", "")).upper()
            target = canonical.parse_entry_url(req.get("url"), index)  # canonical already: the same parser
            inter = parse_entry(method, target, index)
            where = f"Bundle.entry[{index}].request.url"
            if inter.kind == "operation" and not (
                inter.operation in DATA_FREE_OPERATIONS and inter.id is None
            ):
                raise forbidden(
                    f"Operation {inter.operation} is not open to the {ctx.client.role} role", [where]
                )
            if not self.proxy_checks:
                continue
            refuse_oracle_params(target.query, where)
            if inter.kind.startswith("search") and method not in ("GET", "HEAD"):
                raise FhirError(
                    400, "A search inside a batch or transaction is a GET", [where], code="not-supported"
                )
            if method in ("GET", "HEAD"):
                for h in ("ifNoneMatch", "ifModifiedSince"):
                    req.pop(h, None)  # a conditional read answers 304 for anyone's id: read it whole
                if inter.kind.startswith("search") and inter.resource_type not in CONFORMANCE:
                    # a search inside a batch: the caller's own only
                    req["url"] = _narrow_url(target.url, ods)
                continue
            res = e.get("resource") or {}
            if method in ("POST", "PUT") and res.get("resourceType") == "Task":
                tenants |= task_tenants(res, bundle, ctx.store)
            elif method == "PATCH" and inter.resource_type == "Task":
                for current in _current(ctx, target.url, ods):
                    tenants |= tenants_of(current)
        # every resource of the bundle travels with its Task(s)
        ctx.state["tenancy.bundle"] = tenants
        return None

    @hookimpl(specname="fhirplug_before_storage", tryfirst=True)
    def judge_before_storage(self, ctx, entry):
        """Ownership, before any other rule reads the resource a write names (a rule that read
        another tenant's Task and refused on its status would tell its status)."""
        if ctx.client.role not in TENANT_ROLES or not self.proxy_checks:
            return None
        ods = ctx.client.ods
        rtype = entry.resource_type
        swaps = ctx.state.setdefault("tenancy.swaps", {})
        if entry.conditional:
            query = entry.url.partition("?")[2]
            refuse_oracle_params(canonical.parse_query(query), _where(entry, "request.url"))
            entry.url = _narrow_url(entry.url, ods)  # can only ever match the caller's own
        elif entry.resource_id is not None:
            found = ctx.store.read(rtype, entry.resource_id)
            mine = found is not None and ods in tenants_of(found)
            if entry.method == "PUT" and not mine and (found is not None or _from_caller(ctx, entry)):
                # update-as-create would answer 201 for a free id and could not for a taken one
                raise FhirError(
                    405,
                    f"{rtype}/{entry.resource_id} is not among your resources: update it only once "
                    "it is yours, and create with POST",
                    [_where(entry, "request.url")] if entry.index is not None else [],
                    code="not-supported",
                )
            if entry.method in ("PATCH", "DELETE") and found is not None and not mine:
                # the store is asked about an id it has never held, so its answer (and every
                # rule's on the way) is exactly its answer for an unknown id
                fake = _unknown_id(entry.resource_id)
                swaps[fake] = entry.resource_id
                _, mark, query = entry.url.partition("?")
                entry.url = (
                    f"{rtype}/{fake}{mark}{query}"  # all else as asked: the store's wording follows it
                )
        if entry.if_none_exist:
            where = _where(entry, "request.ifNoneExist")
            criteria = canonical.parse_criteria(entry.if_none_exist, rtype, where)
            refuse_oracle_params(criteria, where)
            # the store gets the criteria as read here, and only ever matches the caller's own
            entry.if_none_exist = urlencode([*criteria, narrowing(ods)])
        if entry.method == "PATCH":
            _refuse_meta_patch(entry)
        if entry.resource is not None:
            _hide_foreign_references(ctx, entry, ods, swaps)
        return None

    @hookimpl(trylast=True)  # after plugins that amend resources (e.g. set Task.owner)
    def fhirplug_before_storage(self, ctx, entry):
        role = ctx.client.role
        if role not in TENANT_ROLES:
            return None
        ods = ctx.client.ods
        rtype = entry.resource_type
        if rtype in CONFORMANCE:
            raise forbidden(f"{rtype} is shared conformance content: only validators and admins change it")
        if entry.method in ("PATCH", "DELETE") or not isinstance(entry.resource, dict):
            return None
        tenants = set(ctx.state.get("tenancy.bundle") or {ods})
        if not entry.conditional and entry.resource_id is not None:
            current = ctx.store.read(rtype, entry.resource_id)
            if current is not None and ods in tenants_of(current):
                tenants |= tenants_of(current)  # an update never takes a partner's view away
        if rtype == "Task":
            named = task_tenants(entry.resource, ctx.body if entry.index is not None else None, ctx.store)
            if ods not in named and self.proxy_checks:
                raise forbidden(
                    "A Task you write must name your organisation as its requester or owner",
                    ["Task.requester", "Task.owner"],
                )
            tenants |= named
        label(entry.resource, tenants)
        return None

    @hookimpl
    def fhirplug_response(self, ctx, response):
        if ctx.client.role not in TENANT_ROLES or ctx.interaction.kind in NOT_FHIR or not self.proxy_checks:
            return
        swaps = ctx.state.get("tenancy.swaps")
        if swaps:
            _swap_back(response, swaps)
        i = ctx.interaction
        if i.kind in ("read", "vread", "history-instance") and response.status in (404, 410):
            # the store's "not known" and "deleted" alike: one answer for every id not the caller's
            _not_known(response, i.resource_type, i.id)
            return
        if response.status >= 300:
            return
        if not response.is_json:
            # asked for JSON, the store answered something else: nothing unjudged leaves
            if response.headers.get("Content-Type") and response.status != 204:
                _not_acceptable(response)
            return
        body = response.resource
        if not isinstance(body, dict):
            return
        ods = ctx.client.ods
        if body.get("resourceType") == "Bundle":
            requests = (ctx.body or {}).get("entry") if i.kind in ("batch", "transaction") else None
            changed = _filter_bundle(body, ods, requests)
            if i.kind == "history-instance" and not [e for e in body.get("entry") or [] if e.get("resource")]:
                _not_known(response, i.resource_type, i.id)
                return
            if changed and i.kind == "page":
                body.pop("total", None)  # a page of someone else's search: its count is theirs
            if changed:
                response.resource = body
        elif not visible_to(body, ods):
            _not_known(response, i.resource_type, i.id)
        elif i.kind in ("read", "vread") and ctx.state.get("tenancy.conditional"):
            _conditional_read(response, ctx.state["tenancy.conditional"])


def _current(ctx, url: str, ods: str) -> list[dict]:
    """The caller's own resources a PATCH url names (by id, or by narrowed search criteria)."""
    path, _, query = url.partition("?")
    parts = path.split("/")
    if query:
        return ctx.store.search(parts[0], _narrow_url("", ods).lstrip("?") + "&" + query)
    if len(parts) >= 2:
        found = ctx.store.read(parts[0], parts[1])
        return [found] if found is not None and ods in tenants_of(found) else []
    return []


def _refuse_meta_patch(entry) -> None:
    """Security labels are ours to set: a patch may not touch meta."""
    body = entry.resource
    paths: list[str] = []
    if isinstance(body, list):  # JSON Patch
        paths = [
            str(op.get("path", "")) + " " + str(op.get("from", "")) for op in body if isinstance(op, dict)
        ]
        touches = any(p.startswith("/meta") or " /meta" in p for p in paths)
    else:  # FHIRPath Patch: Parameters.parameter[operation].part[path|name]
        for op in (body or {}).get("parameter") or []:
            for part in op.get("part") or []:
                if part.get("name") in ("path", "name"):
                    paths.append(str(part.get("valueString", "")))
        touches = any(re.search(r"(^|\.)meta(\.|$)", p) for p in paths)
    if touches:
        raise forbidden("A patch may not change meta: security labels are set by the server")


def _filter_bundle(bundle: dict, ods: str, requests: list | None = None) -> bool:
    """Drop what the tenant may not see; True when anything changed. ``requests``: the entries
    of the batch this is the answer to (a read's answer is matched to its request by place)."""
    btype = bundle.get("type")
    positional = btype in ("transaction-response", "batch-response")
    changed = False
    kept = []
    for n, e in enumerate(bundle.get("entry") or []):
        res = e.get("resource")
        asked = _asked(requests, n) if positional else None
        status = str((e.get("response") or {}).get("status", ""))
        if asked is not None and status[:3] in ("404", "410"):
            kept.append(_not_known_entry(asked))  # the store's own "not known" or "deleted"
            changed = True
        elif isinstance(res, dict) and res.get("resourceType") == "Bundle":
            changed |= _filter_bundle(res, ods)  # a search inside a batch
            if (
                asked is not None
                and asked.kind == "history-instance"
                and not [x for x in res.get("entry") or [] if x.get("resource")]
            ):
                kept.append(_not_known_entry(asked))
                changed = True
            else:
                kept.append(e)
        elif isinstance(res, dict):
            if visible_to(res, ods):
                kept.append(e)
            elif positional:  # one answer per request: keep the place, answer as for an unknown id
                kept.append(_not_known_entry(asked))
                changed = True
            else:
                changed = True
        elif positional:
            kept.append(e)
        else:
            changed = True  # a deleted version in a history: whose it was is not known here
    if changed:
        bundle["entry"] = kept
        if btype == "history":
            bundle.pop("total", None)  # the store counted versions the tenant does not see
    return changed


# ---------------------------------------------------------------- the oracle guards


def refuse_oracle_params(query, where: str | None = None) -> None:
    """Chained parameters and ``_has`` are evaluated by the store over every tenant's resources,
    so their result counts tell what another tenant holds (``Task?patient.family=Smith`` gives
    1 or 0). HAPI has no way to narrow the resources a chain walks through, so for tenants
    they are refused (fail closed), as are ``_filter``, ``_list`` and ``_query``, which can
    reach the same way."""
    for name, _ in query:
        base = name.split(":", 1)[0]
        if base in REFUSED_PARAMS or "." in name:
            raise FhirError(
                400,
                f"The search parameter {name!r} is not open to tenant clients: chained parameters, "
                "_has, _filter, _list and _query could tell what another organisation holds",
                [where or name],
                code="not-supported",
            )


def _representation(ctx) -> None:
    """The store is asked for JSON, which the rules judge; XML is rendered from that JSON by the
    proxy; any other representation (Turtle, HTML, a narrative-only ``_summary=text`` read)
    is refused with 406, because nothing here could judge it."""
    fmt = ctx.request.param("_format")
    if fmt is not None:
        want = _format_of(fmt.split(";", 1)[0].strip().lower())
    else:
        want = _from_accept(ctx.request.header("accept"))
    if want is None:
        raise FhirError(
            406,
            "Tenant clients get application/fhir+json or application/fhir+xml only",
            ["_format"] if fmt is not None else [],
            code="not-supported",
        )
    ctx.upstream_query_withheld.add("_format")
    ctx.upstream_headers["accept"] = "application/fhir+json"
    if want == "xml":
        ctx.render_as = "xml"
    if ctx.request.param("_summary") == "text" and ctx.interaction.kind in ("read", "vread"):
        raise FhirError(
            406,
            "_summary=text on a read is the narrative as HTML, which is not open to tenant clients; "
            "read the resource's text element instead",
            ["_summary"],
            code="not-supported",
        )


def _format_of(media: str) -> str | None:
    if media in ("json", "application/json", "application/fhir+json"):
        return "json"
    if media in ("xml", "text/xml", "application/xml", "application/fhir+xml"):
        return "xml"
    return None


def _from_accept(accept: str | None) -> str | None:
    if not accept or not accept.strip():
        return "json"
    ranked = []
    for n, part in enumerate(accept.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, n, media.lower()))
    for negq, _, media in sorted(ranked):
        if negq == 0:
            continue
        if media in ("*/*", "application/*"):
            return "json"
        if (want := _format_of(media)) is not None:
            return want
    return None


def _hide_foreign_references(ctx, entry, ods: str, swaps: dict) -> None:
    """A reference to another tenant's resource is sent to the store as one to an id it has
    never held, so the write is answered exactly as one naming a missing resource; a conditional
    reference (``Patient?identifier=x``) is narrowed to the caller's own resources."""
    bases = _local_bases(ctx)
    bundle = ctx.body if entry.index is not None and isinstance(ctx.body, dict) else {}
    # a reference to a fullUrl a create of this transaction carries is rewritten by the store to
    # the new resource, whoever once held that id
    created = {
        e.get("fullUrl")
        for e in bundle.get("entry") or []
        if isinstance(e, dict) and str((e.get("request") or {}).get("method", "")).upper() == "POST"
    }
    for holder in _references(entry.resource):
        ref = holder["reference"]
        if ref.startswith("#") or ref.startswith("urn:") or ref in created:
            continue
        prefix, rel = "", ref
        for base in bases:
            if ref.startswith(base + "/"):
                prefix, rel = ref[: len(base) + 1], ref[len(base) + 1 :]
                break
        else:
            if canonical.is_absolute(ref):
                continue  # another server's resource: the store does not look it up
        if "?" in rel:
            rtype, _, query = rel.partition("?")
            where = _where(entry, "resource")
            criteria = canonical.parse_criteria(rel, rtype, where)
            refuse_oracle_params(criteria, where)
            holder["reference"] = f"{prefix}{rtype}?{urlencode([*criteria, narrowing(ods)])}"
            continue
        m = _LITERAL_REF.match(rel)
        if not m:
            continue
        found = ctx.store.read(m.group(1), m.group(2))
        if found is not None and not visible_to(found, ods):
            fake = _unknown_id(m.group(2))
            swaps[fake] = m.group(2)
            holder["reference"] = f"{prefix}{m.group(1)}/{fake}{m.group(3) or ''}"


def _local_bases(ctx) -> list[str]:
    """The absolute bases the store takes as its own: ours, the store's, and the store's under
    the other spelling of the loopback host (HAPI's default local bases are both)."""
    bases = {b.rstrip("/") for b in (ctx.public_base, getattr(ctx.store, "base_url", "")) if b}
    for b in list(bases):
        for one, other in (("//127.0.0.1", "//localhost"), ("//localhost", "//127.0.0.1")):
            if one + ":" in b or b.split("/")[2:3] == [one[2:]]:
                bases.add(b.replace(one, other, 1))
    return sorted(bases, key=len, reverse=True)


def _references(node):
    """Every Reference-shaped object (a ``reference`` string member) in a resource or patch."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for v in node.values():
            yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


def _unknown_id(like: str) -> str:
    """An id the store has never held, of the same kind as ``like``: the store looks numeric
    ids up otherwise than others, and words its answer accordingly."""
    if like.isdigit():
        return "9" + str(uuid.uuid4().int)[:17]
    return "unknown-" + uuid.uuid4().hex


def _swap_back(response, swaps: dict) -> None:
    """Put the ids the caller named back where the store's answer names the stand-in ids."""
    for h in ("Location", "Content-Location"):
        if h in response.headers:
            for fake, real in swaps.items():
                response.headers[h] = response.headers[h].replace(fake, real)
    if not response.is_json or response.resource is None:
        return
    text = dumps(response.resource).decode()
    if any(fake in text for fake in swaps):
        for fake, real in swaps.items():
            text = text.replace(fake, real)
        response.resource = loads(text)


def _from_caller(ctx, entry) -> bool:
    if entry.index is None:
        return True
    entries = (ctx.body or {}).get("entry") or []
    callers = ctx.state.get("tenancy.caller_entries")
    return callers is None or (entry.index < len(entries) and id(entries[entry.index]) in callers)


def _where(entry, element: str) -> str:
    return f"Bundle.entry[{entry.index}].{element}" if entry.index is not None else element


def _not_known_error(rtype: str | None, rid: str | None) -> FhirError:
    what = f"{rtype}/{rid}" if rtype and rid else "The resource"
    return FhirError(404, f"{what} is not known", code="not-found")


def _not_known(response, rtype: str | None, rid: str | None) -> None:
    """Exactly the answer for an id that does not exist: existence is not leaked."""
    response.status = 404
    for h in ("ETag", "Last-Modified", "Location", "Content-Location"):
        response.headers.pop(h, None)
    response.resource = _not_known_error(rtype, rid).to_resource()


def _not_known_entry(asked) -> dict:
    rtype, rid = (asked.resource_type, asked.id) if asked is not None else (None, None)
    return {"response": {"status": "404 Not Found", "outcome": _not_known_error(rtype, rid).to_resource()}}


def _asked(requests: list | None, n: int):
    """The read a batch entry asked for (None for writes and when unknown)."""
    if not requests or n >= len(requests) or not isinstance(requests[n], dict):
        return None
    req = requests[n].get("request") or {}
    method = str(req.get("method", "")).upper()
    if method not in ("GET", "HEAD"):
        return None
    try:
        return parse_entry(method, canonical.parse_entry_url(req.get("url"), n), n)
    except FhirError:
        return None


def _not_acceptable(response) -> None:
    response.status = 406
    for h in ("ETag", "Last-Modified", "Location", "Content-Location"):
        response.headers.pop(h, None)
    err = FhirError(406, "Tenant clients get application/fhir+json or application/fhir+xml only")
    response.resource = err.to_resource()


def _conditional_read(response, asked: dict) -> None:
    """If-None-Match, then If-Modified-Since (RFC 9110 13.2.2), judged on what the caller may read."""
    etag = response.headers.get("ETag")
    inm = asked.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        hit = "*" in tags or (etag is not None and etag.removeprefix("W/") in tags)
    else:
        hit = False
        try:
            since = parsedate_to_datetime(asked["if-modified-since"])
            modified = parsedate_to_datetime(response.headers.get("Last-Modified", ""))
            hit = modified <= since
        except (TypeError, ValueError, KeyError):
            hit = False
    if hit:
        response.status = 304
        response.replace_body(b"", response.headers.get("Content-Type", "application/fhir+json"))


def _switch(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError(f"{PROXY_CHECKS_ENV} must be on or off, not {value!r}")


tenancy = Tenancy()
