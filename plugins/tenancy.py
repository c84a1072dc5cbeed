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

import re
from urllib.parse import quote

from proxy.conformance import CONFORMANCE_TYPES
from proxy.errors import FhirError
from proxy.hookspecs import hookimpl

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
    @hookimpl
    def fhirplug_request(self, ctx):
        i = ctx.interaction
        role = ctx.client.role
        if i.kind in NOT_FHIR or role == "admin":
            return None
        rtype = i.resource_type
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
        if i.kind in ("search-type", "search-system", "search-compartment") and rtype not in CONFORMANCE:
            ctx.upstream_query.append(narrowing(ctx.client.ods))
        return None

    @hookimpl
    def fhirplug_before_bundle(self, ctx, bundle):
        if ctx.client.role == "validator":
            for i, e in enumerate(bundle.get("entry") or []):
                url = str((e.get("request") or {}).get("url", ""))
                if url.split("?", 1)[0].split("/", 1)[0] not in CONFORMANCE:
                    raise forbidden(
                        "The validator role changes conformance resources only",
                        [f"Bundle.entry[{i}].request.url"],
                    )
            return None
        if ctx.client.role not in TENANT_ROLES:
            return None
        ods = ctx.client.ods
        tenants = {ods}
        for e in bundle.get("entry") or []:
            req = e.get("request") or {}
            method, url = str(req.get("method", "")).upper(), str(req.get("url", ""))
            rtype = url.split("?", 1)[0].split("/", 1)[0]
            if method == "GET":
                if rtype not in CONFORMANCE and "/" not in url.split("?", 1)[0]:
                    req["url"] = _narrow_url(url, ods)  # a search inside a batch: the caller's own only
                continue
            res = e.get("resource") or {}
            if method in ("POST", "PUT") and res.get("resourceType") == "Task":
                tenants |= task_tenants(res, bundle, ctx.store)
            elif method == "PATCH" and rtype == "Task":
                for current in _current(ctx, url, ods):
                    tenants |= tenants_of(current)
        # every resource of the bundle travels with its Task(s)
        ctx.state["tenancy.bundle"] = tenants
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

        current: list[dict] = []
        if entry.conditional:
            entry.url = _narrow_url(entry.url, ods)  # can only ever match the caller's own
        elif entry.resource_id is not None:
            found = ctx.store.read(rtype, entry.resource_id)
            if found is not None:
                if ods not in tenants_of(found):
                    raise forbidden(f"{rtype}/{entry.resource_id} belongs to another organisation")
                current = [found]
        if entry.if_none_exist:
            entry.if_none_exist = entry.if_none_exist + "&" + _narrow_url("", ods).lstrip("?")

        if entry.method == "PATCH":
            _refuse_meta_patch(entry)
            return None
        if entry.method == "DELETE" or not isinstance(entry.resource, dict):
            return None

        tenants = set(ctx.state.get("tenancy.bundle") or {ods})
        for c in current:
            tenants |= tenants_of(c)  # an update never takes a partner's view away
        if rtype == "Task":
            named = task_tenants(entry.resource, ctx.body if entry.index is not None else None, ctx.store)
            if ods not in named:
                raise forbidden(
                    "A Task you write must name your organisation as its requester or owner",
                    ["Task.requester", "Task.owner"],
                )
            tenants |= named
        label(entry.resource, tenants)
        return None

    @hookimpl
    def fhirplug_response(self, ctx, response):
        if ctx.client.role not in TENANT_ROLES or ctx.interaction.kind in NOT_FHIR:
            return
        if response.status == 410 and ctx.interaction.kind in ("read", "vread"):
            # "deleted" would say that someone's resource existed here: answer as for any unknown id
            response.status = 404
            response.resource = FhirError(404, "The resource is not known", code="not-found").to_resource()
            return
        if response.status >= 300 or not response.is_json:
            return
        body = response.resource
        if not isinstance(body, dict):
            return
        ods = ctx.client.ods
        if body.get("resourceType") == "Bundle":
            if _filter_bundle(body, ods):
                response.resource = body
        elif not visible_to(body, ods):
            i = ctx.interaction
            what = f"{i.resource_type}/{i.id}" if i.id else "The resource"
            # exactly what the store says of an id that does not exist: existence is not leaked
            hidden = FhirError(404, f"{what} is not known", code="not-found")
            response.status = 404
            for h in ("ETag", "Last-Modified", "Location", "Content-Location"):
                response.headers.pop(h, None)
            response.resource = hidden.to_resource()


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


def _filter_bundle(bundle: dict, ods: str) -> bool:
    """Drop what the tenant may not see; True when anything changed."""
    btype = bundle.get("type")
    positional = btype in ("transaction-response", "batch-response")
    changed = False
    kept = []
    for e in bundle.get("entry") or []:
        res = e.get("resource")
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            changed |= _filter_bundle(res, ods)  # a search inside a batch
            kept.append(e)
        elif isinstance(res, dict):
            if visible_to(res, ods):
                kept.append(e)
            elif positional:  # one answer per request: keep the place, hide the content
                kept.append({"response": {"status": "404 Not Found"}})
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


tenancy = Tenancy()
