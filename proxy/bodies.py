"""Reads request bodies: media type, size, gzip, JSON, and the resources a write carries."""

from __future__ import annotations

import zlib
from urllib.parse import urlencode

import simplejson

from proxy import canonical, json_limits
from proxy.context import Interaction, WriteEntry
from proxy.errors import FhirError
from proxy.interactions import parse_entry

JSON_TYPES = {"application/fhir+json", "application/json"}
MERGE_PATCH = "application/merge-patch+json"  # RFC 7386: turned into JSON Patch on arrival
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml"}
# operations that store nothing: their bodies pass to the store as sent
PASS_THROUGH_OPERATIONS = {"$validate"}
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_limited(stream, content_length: int | None, limit: int) -> bytes:
    """Read a request body, refusing with 413 as soon as it passes ``limit``.

    Chunked bodies have no Content-Length to check up front, so the count is kept while reading.
    """
    too_big = FhirError(413, f"The body is larger than the {limit}-byte limit (FHIRPLUG_MAX_BODY_BYTES)")
    if content_length is not None and content_length > limit:
        raise too_big
    buf = bytearray()
    while chunk := stream.read(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise too_big
    return bytes(buf)


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo a gzip Content-Encoding without letting a small bomb expand past ``limit``."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return raw
    if enc not in ("gzip", "x-gzip"):
        raise FhirError(415, f"Content-Encoding {enc} is not supported; send gzip or identity")
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise FhirError(400, f"The gzip body could not be decompressed: {exc}") from exc
    if len(out) > limit or d.unconsumed_tail:
        raise FhirError(413, f"The decompressed body is larger than the {limit}-byte limit")
    return out


def parse_json(raw: bytes):
    try:
        return json_limits.loads(raw)
    except simplejson.JSONDecodeError as exc:
        raise FhirError(
            400,
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="structure",
        ) from exc
    except UnicodeDecodeError as exc:
        raise FhirError(400, "The body is not UTF-8 encoded JSON", code="structure") from exc


def check_body_media_type(interaction: Interaction, content_type: str | None, has_body: bool) -> str:
    """Which media types each interaction takes. FHIR XML arrives here already converted to JSON
    (``proxy.xml_intake``, before any plugin); the one XML body left is a ``$validate`` of XML
    that FHIR cannot hold, which goes to the store's validator as it came."""
    mt = media_type(content_type)
    kind = interaction.kind
    if kind in ("search-type", "search-system"):
        if has_body and mt not in (FORM, ""):
            raise FhirError(415, f"POST _search takes {FORM}, not {mt}")
        return mt
    if not has_body:
        return mt
    if kind == "operation" and interaction.operation in PASS_THROUGH_OPERATIONS and mt in XML_TYPES:
        return mt
    if kind == "patch" and mt == JSON_PATCH:
        return mt
    if mt in JSON_TYPES:
        return mt
    if not mt:
        raise FhirError(
            415, "A body was sent without a Content-Type; use application/fhir+json or application/fhir+xml"
        )
    raise FhirError(
        415,
        f"Content-Type {mt} is not accepted here; use application/fhir+json or application/fhir+xml"
        + (" or application/json-patch+json" if kind == "patch" else ""),
    )


def patch_by_shape(interaction: Interaction, mt: str, body: object) -> str:
    """What a PATCH's JSON body is, by its shape, whatever JSON type it was sent as: an array is a
    JSON Patch (no FHIR resource is an array); an object without ``resourceType`` is a JSON Merge
    Patch (``MERGE_PATCH``: client libraries such as fhirpy send their patches so, as
    ``application/json``); a ``Parameters`` resource is a FHIRPath Patch."""
    if interaction.kind != "patch" or mt not in JSON_TYPES:
        return mt
    if isinstance(body, list):
        return JSON_PATCH
    if isinstance(body, dict) and "resourceType" not in body:
        return MERGE_PATCH
    return mt


def resource_entries(interaction: Interaction, path: str, query: str, body, mt: str) -> list[WriteEntry]:
    """The resources a write carries, checked for the shape the URL promises."""
    kind = interaction.kind
    url = path + (f"?{query}" if query else "")
    if kind in ("create", "update"):
        _require_resource(body)
        if body["resourceType"] != interaction.resource_type:
            raise FhirError(
                400,
                f"The body is a {body['resourceType']} but the URL names {interaction.resource_type}",
                ["resourceType"],
            )
        if kind == "update" and interaction.id and body.get("id") not in (None, interaction.id):
            raise FhirError(
                400,
                f"The body's id {body.get('id')!r} does not match the URL's id {interaction.id!r}",
                [f"{interaction.resource_type}.id"],
            )
        return [WriteEntry(interaction.method, url, body, content_type=mt)]
    if kind == "patch":
        if mt == JSON_PATCH:
            if not isinstance(body, list):
                raise FhirError(400, "A JSON Patch body must be a JSON array of operations")
        else:
            _require_resource(body)
            if body["resourceType"] != "Parameters":
                raise FhirError(400, "A FHIRPath Patch body must be a Parameters resource", ["resourceType"])
        return [WriteEntry("PATCH", url, body, content_type=mt)]
    if kind == "delete":
        return [WriteEntry("DELETE", url, None)]
    return []


def bundle_entries(body, bases: tuple[str, ...] = ()) -> tuple[str, list[WriteEntry]]:
    """Bundle.type and the write entries of a transaction or batch posted to the base.

    Every entry's ``request.url`` (and ``ifNoneExist``) is read by the one canonical parser
    (``proxy.canonical``) and rewritten in ``body`` to the canonical form, so the checks that
    follow and the store read the same URL. ``bases`` are this server's absolute bases (public
    and the store's), the only absolute entry URLs accepted.
    """
    _require_resource(body)
    if body["resourceType"] != "Bundle":
        raise FhirError(
            400,
            f"POST to the base takes a transaction or batch Bundle, not a {body['resourceType']}",
            ["resourceType"],
        )
    btype = body.get("type")
    if btype not in ("transaction", "batch"):
        raise FhirError(
            400,
            f"POST to the base takes a Bundle of type transaction or batch, not {btype!r}",
            ["Bundle.type"],
        )
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError(400, "Bundle.entry must be an array", ["Bundle.entry"])
    out = []
    for i, e in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        req = e.get("request") if isinstance(e, dict) else None
        if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
            raise FhirError(400, f"Entry {i} needs request.method and request.url", [f"{where}.request"])
        method = req["method"]
        if not isinstance(method, str) or method.upper() not in canonical.ENTRY_METHODS:
            raise FhirError(
                400, f"Entry {i}: {str(method)[:20]!r} is not a FHIR method", [f"{where}.request.method"]
            )
        method = method.upper()
        target = canonical.parse_entry_url(req["url"], i, bases)
        inter = parse_entry(method, target, i)
        req["url"], req["method"] = target.url, method  # the store acts on what was judged
        if req.get("ifNoneExist") is not None:
            criteria = canonical.parse_criteria(
                req["ifNoneExist"], inter.resource_type, f"{where}.request.ifNoneExist"
            )
            req["ifNoneExist"] = urlencode(list(criteria))
        if inter.kind not in ("create", "update", "patch", "delete"):
            continue  # reads, searches and operations: judged by the plugins' bundle hooks
        res = e.get("resource")
        if method in ("POST", "PUT", "PATCH") and not isinstance(res, dict):
            raise FhirError(400, f"Entry {i} ({method}) has no resource", [f"{where}.resource"])
        if inter.kind in ("create", "update") and res.get("resourceType") != inter.resource_type:
            raise FhirError(
                400,
                f"Entry {i}: the resource is a {res.get('resourceType')!r} but the URL names "
                f"{inter.resource_type}",
                [f"{where}.resource.resourceType"],
            )
        if inter.kind == "update" and inter.id and res.get("id") not in (None, inter.id):
            raise FhirError(
                400,
                f"Entry {i}: the resource's id {res.get('id')!r} does not match the URL's id {inter.id!r}",
                [f"{where}.resource.id"],
            )
        out.append(
            WriteEntry(
                method,
                target.url,
                res,
                index=i,
                full_url=e.get("fullUrl"),
                if_none_exist=req.get("ifNoneExist"),
            )
        )
    return btype, out


def _require_resource(body) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirError(400, "The body is not a FHIR resource: it has no resourceType", ["resourceType"])
