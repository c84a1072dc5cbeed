"""No oracles: a tenant learns nothing of another tenant's data, not even that it exists.

- search parameters the store evaluates over every tenant's resources are refused
  (:func:`refuse_oracle_params`);
- a write that names another tenant's resource (or a missing or deleted one) is sent to the
  store as one naming an id it has never held (:func:`unknown_id`,
  :func:`hide_foreign_references`), and the caller's ids are put back in the answer
  (:func:`swap_back`);
- what comes back is filtered (:func:`filter_bundle`), and a read of another tenant's resource is
  answered exactly as one of an unknown id (:func:`not_known`); a conditional read is judged on
  what the caller may read (:func:`conditional_read`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

from hubspoke.tenants import read_narrowing, visible_to
from proxy import canonical
from proxy.context import RequestContext, WriteEntry
from proxy.errors import FhirError
from proxy.interactions import parse_entry
from proxy.response import ProxyResponse, dumps, loads

REFUSED_PARAMS = frozenset({"_has", "_filter", "_list", "_query"})
# Bundles the store makes as answers (a search or history inside a batch): judged entry by entry.
# Any other Bundle in an answer is a stored resource (an EPS prescription-order message) and is
# judged by its own label: its inner resources are the message as sent, never labelled themselves.
RESULT_BUNDLE_TYPES = frozenset({"searchset", "history"})
_LITERAL_REF = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")


def refuse_oracle_params(query: Iterable[tuple[str, str]], where: str | None = None) -> None:
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


def filter_bundle(bundle: dict, ods: str, requests: list | None = None) -> bool:
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
        elif (
            isinstance(res, dict)
            and res.get("resourceType") == "Bundle"
            and res.get("type") in RESULT_BUNDLE_TYPES
        ):
            changed |= filter_bundle(res, ods)  # a search inside a batch
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


def filter_parameters(parameters: dict, ods: str) -> bool:
    """An operation's ``Parameters`` answer (EPS's release answer): each resource in it judged
    as in a Bundle, nested parts too; True when anything was dropped."""
    return _filter_parameter_list(parameters, "parameter", ods)


def _filter_parameter_list(holder: dict, key: str, ods: str) -> bool:
    changed = False
    kept = []
    for p in holder.get(key) or []:
        res = p.get("resource") if isinstance(p, dict) else None
        if (
            isinstance(res, dict)
            and res.get("resourceType") == "Bundle"
            and res.get("type") in RESULT_BUNDLE_TYPES
        ):
            changed |= filter_bundle(res, ods)
        elif isinstance(res, dict) and not visible_to(res, ods):
            changed = True
            continue
        if isinstance(p, dict) and isinstance(p.get("part"), list):
            changed |= _filter_parameter_list(p, "part", ods)
        kept.append(p)
    if changed:
        holder[key] = kept
    return changed


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


def _not_known_error(rtype: str | None, rid: str | None) -> FhirError:
    what = f"{rtype}/{rid}" if rtype and rid else "The resource"
    return FhirError(404, f"{what} is not known", code="not-found")


def not_known(response: ProxyResponse, rtype: str | None, rid: str | None) -> None:
    """Exactly the answer for an id that does not exist: existence is not leaked."""
    response.status = 404
    for h in ("ETag", "Last-Modified", "Location", "Content-Location"):
        response.headers.pop(h, None)
    response.resource = _not_known_error(rtype, rid).to_resource()


def _not_known_entry(asked) -> dict:
    rtype, rid = (asked.resource_type, asked.id) if asked is not None else (None, None)
    return {"response": {"status": "404 Not Found", "outcome": _not_known_error(rtype, rid).to_resource()}}


def not_acceptable(response: ProxyResponse) -> None:
    """406: what the store answered is no representation the rules could judge."""
    response.status = 406
    for h in ("ETag", "Last-Modified", "Location", "Content-Location"):
        response.headers.pop(h, None)
    err = FhirError(406, "Tenant clients get application/fhir+json or application/fhir+xml only")
    response.resource = err.to_resource()


def conditional_read(response: ProxyResponse, asked: dict[str, str]) -> None:
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


def hide_foreign_references(ctx: RequestContext, entry: WriteEntry, ods: str, swaps: dict[str, str]) -> None:
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
            where = entry_expression(entry, "resource")
            criteria = canonical.parse_criteria(rel, rtype, where)
            refuse_oracle_params(criteria, where)
            # what the caller may read (its own, or by a care relationship) may be referred to
            holder["reference"] = f"{prefix}{rtype}?{urlencode([*criteria, read_narrowing(ods)])}"
            continue
        m = _LITERAL_REF.match(rel)
        if not m:
            continue
        found = ctx.store.read(m.group(1), m.group(2))
        # a missing id goes to the store as a stand-in too, and so does a deleted one: HAPI words
        # "not found" and "is deleted" differently, and a deleted id may have been anyone's
        if found is None or not visible_to(found, ods):
            fake = unknown_id(m.group(2))
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


def unknown_id(like: str) -> str:
    """An id the store has never held, of the same kind as ``like``: the store looks numeric
    ids up otherwise than others, and words its answer accordingly."""
    if like.isdigit():
        return "9" + str(uuid.uuid4().int)[:17]
    return "unknown-" + uuid.uuid4().hex


def swap_back(response: ProxyResponse, swaps: dict[str, str]) -> None:
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


def entry_expression(entry: WriteEntry, element: str) -> str:
    """Where ``element`` of a written entry stands in the request body, as FHIRPath."""
    return f"Bundle.entry[{entry.index}].{element}" if entry.index is not None else element
