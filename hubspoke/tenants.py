"""Who hub-and-spoke data belongs to and who may see it: tenant labels, roles and narrowing.

Every resource a spoke or hub client writes is labelled, in ``meta.security``, with the ODS
codes of the organisations that may see it (:func:`label`): the writer, and for a Task its
requester and owner (:func:`task_tenants`). A tenant sees a resource that carries its label, as
tenant or as reader (a care relationship, ``careaccess``), and conformance resources, which
everyone shares (:func:`visible_to`); its searches are narrowed in the store by those labels
(:func:`read_narrowing`), its conditional writes by its tenant label alone (:func:`narrowing`).
Labels are the server's to set: a patch may not touch ``meta`` (:func:`refuse_meta_patch`).
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import quote

from hubspoke.identifiers import ODS_SYSTEM, READER_SYSTEM, TENANT_SYSTEM
from proxy.auth.registry import TENANT_ROLES as REGISTRY_TENANT_ROLES
from proxy.conformance import CONFORMANCE_TYPES
from proxy.context import WriteEntry
from proxy.errors import FhirError

CONFORMANCE = CONFORMANCE_TYPES  # shared reading for every role
# roles that act for one organisation (ODS code) and see only what carries its tenant label: the
# hub-and-spoke pharmacies, and EPS's prescribing and dispensing systems (the registry's list)
TENANT_ROLES = frozenset(REGISTRY_TENANT_ROLES)


class ReadsResources(Protocol):
    """What an organisation look-up needs of the store: a read by type and id."""

    def read(self, resource_type: str, resource_id: str) -> dict | None: ...


_ORG_URL = re.compile(r"(?:^|/)Organization/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def forbidden(message: str, expression: list[str] | None = None) -> FhirError:
    """403 forbidden: the refusal of everything a role or tenant may not do."""
    return FhirError(403, message, expression or [], code="forbidden")


def tenants_of(resource: dict) -> set[str]:
    """The ODS codes ``resource`` is labelled for. A tenant label without a string code (only a
    write past the proxy can leave one) names nobody: it is ignored, so it can neither widen who
    sees the resource nor break the labelling of its next version."""
    labels = (resource.get("meta") or {}).get("security") or []
    return {
        code
        for s in labels
        if isinstance(s, dict) and s.get("system") == TENANT_SYSTEM and isinstance(code := s.get("code"), str)
    }


def readers_of(resource: dict) -> set[str]:
    """The ODS codes that may only read ``resource``, by a care relationship (``careaccess``);
    a reader label without a string code names nobody, as for tenant labels."""
    labels = (resource.get("meta") or {}).get("security") or []
    return {
        code
        for s in labels
        if isinstance(s, dict) and s.get("system") == READER_SYSTEM and isinstance(code := s.get("code"), str)
    }


def visible_to(resource: dict, ods: str) -> bool:
    """Conformance resources, OperationOutcomes and what carries ``ods``'s label, as tenant or as
    reader (a care relationship, ``careaccess``): what ``ods`` may read, not what it may write."""
    rtype = resource.get("resourceType")
    return (
        rtype in CONFORMANCE
        or rtype == "OperationOutcome"
        or ods in tenants_of(resource)
        or ods in readers_of(resource)
    )


def label(resource: dict, tenants: set[str]) -> None:
    """Replace whatever tenant labels the caller sent with ours (a caller cannot share by label)."""
    meta = resource.setdefault("meta", {})
    others = [s for s in meta.get("security") or [] if s.get("system") != TENANT_SYSTEM]
    meta["security"] = others + [{"system": TENANT_SYSTEM, "code": t} for t in sorted(tenants)]


def narrowing(ods: str) -> tuple[str, str]:
    """The search parameter that narrows a search in the store to ``ods``'s own resources."""
    return ("_security", f"{TENANT_SYSTEM}|{ods}")


def read_narrowing(ods: str) -> tuple[str, str]:
    """The search parameter that narrows a *search* to what ``ods`` may read: its own resources
    and those it reads by a care relationship (one OR clause). Conditional writes keep
    :func:`narrowing`: they may only ever match what ``ods`` owns."""
    return ("_security", f"{TENANT_SYSTEM}|{ods},{READER_SYSTEM}|{ods}")


def narrow_url(url: str, ods: str, reading: bool = False) -> str:
    """``url`` with :func:`narrowing` (or, ``reading``, :func:`read_narrowing`) added to its query."""
    name, value = read_narrowing(ods) if reading else narrowing(ods)
    return f"{url}{'&' if '?' in url else '?'}{name}={quote(value, safe='')}"


def ods_of_organization(org: dict | None) -> str | None:
    """The ODS code an Organization carries, if any."""
    for ident in (org or {}).get("identifier") or []:
        if ident.get("system") == ODS_SYSTEM and ident.get("value"):
            return ident["value"]
    return None


def ods_of_reference(ref: dict | None, bundle: dict | None, store: ReadsResources | None) -> str | None:
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


def task_tenants(task: dict, bundle: dict | None, store: ReadsResources | None) -> set[str]:
    """The ODS codes of a Task's requester and owner: who may see it and what travels with it."""
    return {
        ods
        for field in ("requester", "owner")
        if (ods := ods_of_reference(task.get(field), bundle, store)) is not None
    }


def refuse_meta_patch(entry: WriteEntry) -> None:
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
