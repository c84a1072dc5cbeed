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
  they can only ever match the caller's own resources;
- an organisation a care relationship names (``careaccess.rules``) gets a *reader* label: it
  reads, never writes; the labels are derived here from the resource's content, whatever the
  caller sent is replaced, and stored resources a rule shares are labelled in the same
  transaction (``ctx.companion_writes``).

Roles: ``admin`` is unrestricted; ``reader`` reads everything and writes nothing; ``validator``
manages conformance resources and runs ``$validate``; ``spoke`` and ``hub`` are tenants.
Conformance resources (profiles, value sets, code systems) are shared reading for everyone.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from urllib.parse import urlencode

from careaccess.labels import readable_by, readers_of, with_readers
from careaccess.rules import Grants, grants
from hubspoke.oracles import (
    conditional_read,
    entry_expression,
    filter_bundle,
    filter_parameters,
    hide_foreign_references,
    not_acceptable,
    not_known,
    refuse_oracle_params,
    swap_back,
    unknown_id,
)
from hubspoke.tenants import (
    CONFORMANCE,
    TENANT_ROLES,
    forbidden,
    label,
    narrow_url,
    narrowing,
    ods_of_reference,
    read_narrowing,
    refuse_meta_patch,
    task_tenants,
    tenants_of,
    visible_to,
)
from proxy import canonical
from proxy.auth.scopes import PROXY_ANSWERED_OPERATIONS
from proxy.config import Settings
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl
from proxy.interactions import parse_entry

NOT_FHIR = frozenset({"health", "oauth", "unknown", "capabilities"})
READS = frozenset(
    {"read", "vread", "history-instance", "history-type", "history-system", "page"}
    | {"search-type", "search-system", "search-compartment"}
)
WRITES = frozenset({"create", "update", "patch", "delete", "transaction", "batch"})
DATA_FREE_OPERATIONS = frozenset({"$validate"})
CONDITIONAL_READ = ("if-none-match", "if-modified-since")
_LITERAL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


# ---------------------------------------------------------------- the hooks


@dataclass
class _Notes:
    """What tenancy remembers between the hooks of one request."""

    conditional: dict[str, str] | None = None  # a conditional read's headers, judged here
    caller_entries: set[int] | None = None  # ids of the entries the caller sent (plugins add more)
    bundle_tenants: set[str] | None = None  # who sees every resource of the bundle
    swaps: dict[str, str] = field(default_factory=dict)  # stand-in id -> the id the caller named
    # readers a care relationship grants to resources of this transaction (fullUrl or Type/id)
    granted: dict[str, set[str]] = field(default_factory=dict)
    # the rule-driven label updates of stored resources, by Type/id (one per resource)
    shared: dict[str, dict] = field(default_factory=dict)


class Tenancy:
    """``proxy_checks`` False (``FHIRPLUG_TENANCY_PROXY_CHECKS=off``, from the app's settings at
    start, or given here by a test) leaves only the labelling of writes and the role rules: for
    the security tests that prove the store's own line stops every attack alone. Never in
    production."""

    def __init__(self, proxy_checks: bool | None = None):
        self._proxy_checks_given = proxy_checks is not None
        self.proxy_checks = proxy_checks if proxy_checks is not None else Settings.tenancy_proxy_checks

    @hookimpl
    def fhirplug_configure(self, settings: Settings) -> None:
        if not self._proxy_checks_given:
            self.proxy_checks = settings.tenancy_proxy_checks

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
            ctx.upstream_query.append(read_narrowing(ctx.client.ods))
        if i.kind in ("read", "vread"):
            # asked of the store, a conditional read answers 304 for an id it holds, whoever's it
            # is: the store is asked for the resource itself, and the condition judged here
            asked = {h: v for h in CONDITIONAL_READ if (v := ctx.request.header(h)) is not None}
            if asked:
                ctx.notes(_Notes).conditional = asked
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
        ctx.notes(_Notes).caller_entries = {id(e) for e in entries}
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
                    req["url"] = narrow_url(target.url, ods, reading=True)
                continue
            res = e.get("resource") or {}
            if method in ("POST", "PUT") and res.get("resourceType") == "Task":
                tenants |= task_tenants(res, bundle, ctx.store)
            elif method == "PATCH" and inter.resource_type == "Task":
                for current in _current(ctx, target.url, ods):
                    tenants |= tenants_of(current)
        # every resource of the bundle travels with its Task(s)
        ctx.notes(_Notes).bundle_tenants = tenants
        # what each resource's care relationships grant the others of this transaction (a
        # MedicationRequest's pharmacy reads the Patient beside it), before any is labelled
        granted = ctx.notes(_Notes).granted
        for e in entries:
            res = e.get("resource")
            method = str((e.get("request") or {}).get("method", "")).upper()
            if method in ("POST", "PUT") and isinstance(res, dict):
                for ref, readers in _grants(ctx, res, bundle).others.items():
                    granted.setdefault(ref, set()).update(readers)
        return None

    @hookimpl(specname="fhirplug_before_storage", tryfirst=True)
    def judge_before_storage(self, ctx, entry):
        """Ownership, before any other rule reads the resource a write names (a rule that read
        another tenant's Task and refused on its status would tell its status)."""
        if ctx.client.role not in TENANT_ROLES or not self.proxy_checks:
            return None
        ods = ctx.client.ods
        rtype = entry.resource_type
        swaps = ctx.notes(_Notes).swaps
        if entry.conditional:
            query = entry.url.partition("?")[2]
            refuse_oracle_params(canonical.parse_query(query), entry_expression(entry, "request.url"))
            entry.url = narrow_url(entry.url, ods)  # can only ever match the caller's own
        elif entry.resource_id is not None:
            found = ctx.store.read(rtype, entry.resource_id)
            mine = found is not None and ods in tenants_of(found)
            if entry.method == "PUT" and not mine and (found is not None or _from_caller(ctx, entry)):
                # update-as-create would answer 201 for a free id and could not for a taken one
                raise FhirError(
                    405,
                    f"{rtype}/{entry.resource_id} is not among your resources: update it only once "
                    "it is yours, and create with POST",
                    [entry_expression(entry, "request.url")] if entry.index is not None else [],
                    code="not-supported",
                )
            if entry.method in ("PATCH", "DELETE") and found is not None and not mine:
                # the store is asked about an id it has never held, so its answer (and every
                # rule's on the way) is exactly its answer for an unknown id
                fake = unknown_id(entry.resource_id)
                swaps[fake] = entry.resource_id
                _, mark, query = entry.url.partition("?")
                entry.url = (
                    f"{rtype}/{fake}{mark}{query}"  # all else as asked: the store's wording follows it
                )
        if entry.if_none_exist:
            where = entry_expression(entry, "request.ifNoneExist")
            criteria = canonical.parse_criteria(entry.if_none_exist, rtype, where)
            refuse_oracle_params(criteria, where)
            # the store gets the criteria as read here, and only ever matches the caller's own
            entry.if_none_exist = urlencode([*criteria, narrowing(ods)])
        if entry.method == "PATCH":
            refuse_meta_patch(entry)
        if entry.resource is not None:
            hide_foreign_references(ctx, entry, ods, swaps)
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
        tenants = set(ctx.notes(_Notes).bundle_tenants or {ods})
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
        self._share(ctx, entry)
        return None

    def _share(self, ctx, entry) -> None:
        """Reader labels from the care-relationship rules (``careaccess.rules``), from the
        resource's content and never from the caller (whatever reader labels it sent are
        replaced); an update keeps those the resource had. Resources already stored that a rule
        shares (a Task's focus, a request's Patient) get theirs in the same transaction, when the
        writer owns them: only an owner shares what it holds."""
        ods = ctx.client.ods
        notes = ctx.notes(_Notes)
        bundle = ctx.body if entry.index is not None and isinstance(ctx.body, dict) else None
        found = _grants(ctx, entry.resource, bundle)
        readers = set(found.own)
        for key in (entry.full_url, f"{entry.resource_type}/{entry.resource_id}"):
            readers |= notes.granted.get(key or "", set())
        if not entry.conditional and entry.resource_id is not None:
            current = ctx.store.read(entry.resource_type, entry.resource_id)
            if current is not None and ods in tenants_of(current):
                readers |= readers_of(current)
        with_readers(entry.resource, readers)
        in_bundle = {e.get("fullUrl") for e in (bundle or {}).get("entry") or [] if isinstance(e, dict)}
        for ref, more in found.others.items():
            if ref.startswith("urn:") or ref in in_bundle or ref in notes.granted:
                continue  # labelled as its own entry
            self._share_stored(ctx, ref, more)

    def _share_stored(self, ctx, ref: str, readers: set[str]) -> None:
        rtype, _, rid = ref.partition("/")
        current = ctx.store.read(rtype, rid)
        if current is None or ctx.client.ods not in tenants_of(current):
            return
        shared = ctx.notes(_Notes).shared
        if ref in shared:
            resource = shared[ref]["resource"]
            with_readers(resource, readers_of(resource) | readers)
            return
        if readers <= readers_of(current) | tenants_of(current):
            return
        updated = copy.deepcopy(current)
        with_readers(updated, readers_of(current) | readers)
        put: dict = {"resource": updated, "request": {"method": "PUT", "url": ref}}
        if version := (current.get("meta") or {}).get("versionId"):
            put["request"]["ifMatch"] = f'W/"{version}"'
        shared[ref] = put
        ctx.companion_writes.append(put)

    @hookimpl
    def fhirplug_response(self, ctx, response):
        if ctx.client.role not in TENANT_ROLES or ctx.interaction.kind in NOT_FHIR or not self.proxy_checks:
            return
        if ctx.interaction.kind == "operation" and ctx.interaction.operation in PROXY_ANSWERED_OPERATIONS:
            return  # built by the proxy from the caller's own message: no stored data to narrow
        swaps = ctx.notes(_Notes).swaps
        if swaps:
            swap_back(response, swaps)
        i = ctx.interaction
        if i.kind in ("read", "vread", "history-instance") and response.status in (404, 410):
            # the store's "not known" and "deleted" alike: one answer for every id not the caller's
            not_known(response, i.resource_type, i.id)
            return
        if response.status >= 300:
            return
        if not response.is_json:
            # asked for JSON, the store answered something else: nothing unjudged leaves
            if response.headers.get("Content-Type") and response.status != 204:
                not_acceptable(response)
            return
        body = response.resource
        if not isinstance(body, dict):
            return
        ods = ctx.client.ods
        if body.get("resourceType") == "Bundle":
            requests = (ctx.body or {}).get("entry") if i.kind in ("batch", "transaction") else None
            changed = filter_bundle(body, ods, requests)
            if i.kind == "history-instance" and not [e for e in body.get("entry") or [] if e.get("resource")]:
                not_known(response, i.resource_type, i.id)
                return
            if changed and i.kind == "page":
                body.pop("total", None)  # a page of someone else's search: its count is theirs
            if changed:
                response.resource = body
        elif body.get("resourceType") == "Parameters" and i.kind == "operation":
            if filter_parameters(body, ods):  # an operation's answer: judged part by part
                response.resource = body
        elif not visible_to(body, ods):
            not_known(response, i.resource_type, i.id)
        elif i.kind in ("read", "vread") and ctx.notes(_Notes).conditional:
            conditional_read(response, ctx.notes(_Notes).conditional)


def _grants(ctx, resource: dict, bundle: dict | None) -> Grants:
    """What writing ``resource`` grants by the care-relationship rules, resolved as the writer:
    Organizations by ODS identifier, the Bundle or the store; a request the writer may read."""
    ods = ctx.client.ods

    def org_ods(ref: dict) -> str | None:
        return ods_of_reference(ref, bundle, ctx.store)

    def resolve(ref: dict, rtype: str) -> dict | None:
        target = ref.get("reference")
        if not isinstance(target, str):
            return None
        for e in (bundle or {}).get("entry") or []:
            res = e.get("resource") if isinstance(e, dict) else None
            if e.get("fullUrl") == target and isinstance(res, dict) and res.get("resourceType") == rtype:
                labelled = copy.deepcopy(res)  # as it will be stored: with the bundle's tenants
                label(labelled, set(ctx.notes(_Notes).bundle_tenants or {ods}))
                return labelled
        m = _LITERAL.search(target)
        if m is None or m.group(1) != rtype:
            return None
        found = ctx.store.read(rtype, m.group(2))
        return found if found is not None and readable_by(found, ods) else None

    return grants(resource, org_ods, resolve)


def _current(ctx, url: str, ods: str) -> list[dict]:
    """The caller's own resources a PATCH url names (by id, or by narrowed search criteria)."""
    path, _, query = url.partition("?")
    parts = path.split("/")
    if query:
        return ctx.store.search(parts[0], narrow_url("", ods).lstrip("?") + "&" + query)
    if len(parts) >= 2:
        found = ctx.store.read(parts[0], parts[1])
        return [found] if found is not None and ods in tenants_of(found) else []
    return []


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


def _from_caller(ctx, entry) -> bool:
    if entry.index is None:
        return True
    entries = (ctx.body or {}).get("entry") or []
    callers = ctx.notes(_Notes).caller_entries
    return callers is None or (entry.index < len(entries) and id(entries[entry.index]) in callers)


tenancy = Tenancy()
