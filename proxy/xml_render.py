"""Renders FHIR JSON as FHIR XML (R4: http://hl7.org/fhir/R4/xml.html and json.html).

Why the proxy renders XML itself: the tenancy rules judge what a caller may see from the JSON
the store is asked for. Relaying the store's own XML would need a second implementation of
those rules over another syntax, and any difference between the two would be a leak. So a
tenant asking for XML gets the very JSON the rules judged, rendered here; nothing the store
rendered in another syntax reaches it.

The mapping is mechanical: members become elements in the order the store wrote them (HAPI
writes JSON in the definition order XML needs), primitives become ``value`` attributes with
their ``_name`` id and extensions as children, ``id`` of an element and ``url`` of an extension
become attributes, nested resources are wrapped in an element of their type, and the
narrative ``div`` is re-parsed (no DTDs, no entities) and written in the XHTML namespace.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

from proxy.errors import FhirError

log = logging.getLogger("fhirplug.xml")
FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"
FHIR_XML = "application/fhir+xml;charset=UTF-8"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_ATTR_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "\t": "&#9;",
    "\n": "&#10;",
    "\r": "&#13;",
}
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ATTR_RE = re.compile(r'[&<>"\t\n\r]')
_TEXT_RE = re.compile(r"[&<>]")


def render_response(response) -> None:
    """Replace a JSON answer's body with its XML rendering. What this renderer cannot write
    (logged) is answered 406 in JSON: the caller can have it as JSON, and nothing unjudged leaves."""
    if not response.is_json:
        return
    try:
        resource = response.resource
        data = to_xml(resource) if isinstance(resource, dict) else b""
    except (ValueError, TypeError):
        log.exception("could not render an answer as XML")
        err = FhirError(406, "The answer could not be rendered as XML; ask for JSON", code="not-supported")
        response.status = 406
        response.resource = err.to_resource()
        return
    response.replace_body(data, FHIR_XML)


def to_xml(resource: dict) -> bytes:
    out: list[str] = []
    _resource(out, resource, root=True)
    return "".join(out).encode("utf-8")


def _name(name) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"not an element name: {name!r}")
    return name


def _attr(value) -> str:
    return _ATTR_RE.sub(lambda m: _ATTR_ESCAPES[m.group()], value)


def _text(value: str) -> str:
    return _TEXT_RE.sub(lambda m: _TEXT_ESCAPES[m.group()], value)


def _primitive(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"not a primitive: {type(value).__name__}")


def _resource(out: list[str], res: dict, root: bool = False) -> None:
    rtype = _name(res.get("resourceType"))
    out.append(f'<{rtype} xmlns="{FHIR_NS}">' if root else f"<{rtype}>")
    _members(out, res, in_resource=True, in_extension=False)
    out.append(f"</{rtype}>")


def _members(out: list[str], obj: dict, in_resource: bool, in_extension: bool) -> None:
    done: set[str] = set()
    for key in obj:
        base = key[1:] if key.startswith("_") else key
        if base in done or base in ("resourceType", "fhir_comments"):
            continue
        done.add(base)
        if not in_resource and base == "id":
            continue  # an attribute of the element (written by the caller)
        if in_extension and base == "url":
            continue
        _element(out, _name(base), obj.get(base), obj.get("_" + base))


def _element(out: list[str], name: str, value, ext) -> None:
    if isinstance(value, list) or isinstance(ext, list):
        values = value if isinstance(value, list) else []
        exts = ext if isinstance(ext, list) else []
        for i in range(max(len(values), len(exts))):
            _one(out, name, values[i] if i < len(values) else None, exts[i] if i < len(exts) else None)
    else:
        _one(out, name, value, ext)


def _one(out: list[str], name: str, value, ext) -> None:
    if isinstance(value, dict):
        if "resourceType" in value:
            out.append(f"<{name}>")
            _resource(out, value)
            out.append(f"</{name}>")
            return
        is_extension = name in ("extension", "modifierExtension")
        attrs = f' id="{_attr(_primitive(value["id"]))}"' if "id" in value else ""
        if is_extension and "url" in value:
            attrs += f' url="{_attr(_primitive(value["url"]))}"'
        inner: list[str] = []
        _members(inner, value, in_resource=False, in_extension=is_extension)
        out.append(f"<{name}{attrs}>{''.join(inner)}</{name}>" if inner else f"<{name}{attrs}/>")
        return
    if name == "div" and isinstance(value, str):
        out.append(_xhtml(value))
        return
    ext = ext if isinstance(ext, dict) else None
    if value is None and ext is None:
        return
    attrs = f' id="{_attr(_primitive(ext["id"]))}"' if ext and "id" in ext else ""
    if value is not None:
        attrs += f' value="{_attr(_primitive(value))}"'
    inner = []
    if ext:
        _members(inner, ext, in_resource=False, in_extension=False)
    out.append(f"<{name}{attrs}>{''.join(inner)}</{name}>" if inner else f"<{name}{attrs}/>")


def _xhtml(div: str) -> str:
    """The narrative, re-parsed and re-written: no DTD, entity, processing instruction or
    foreign element passes; what cannot be read so is written as its plain text."""
    try:
        if "<!" in div or "<?" in div:
            raise ValueError("declarations are not narrative")
        root = ET.fromstring(div)
        if root.tag != f"{{{XHTML_NS}}}div":
            raise ValueError("the narrative is not an XHTML div")
        out: list[str] = []
        _xhtml_element(out, root, root=True)
        return "".join(out)
    except (ET.ParseError, ValueError):
        text = re.sub(r"<[^>]*>", "", div)
        return f'<div xmlns="{XHTML_NS}">{_text(text)}</div>'


def _xhtml_element(out: list[str], el, root: bool = False) -> None:
    ns, _, local = el.tag[1:].partition("}") if el.tag.startswith("{") else ("", "", el.tag)
    if ns != XHTML_NS or not re.match(r"^[A-Za-z][A-Za-z0-9]*$", local):
        raise ValueError(f"not an XHTML element: {el.tag}")
    attrs = f' xmlns="{XHTML_NS}"' if root else ""
    for key, value in el.attrib.items():
        if key.startswith(f"{{{XML_NS}}}"):
            key = "xml:" + key.split("}", 1)[1]
        elif key.startswith("{") or not re.match(r"^[A-Za-z][A-Za-z0-9_\-]*$", key):
            continue
        attrs += f' {key}="{_attr(value)}"'
    out.append(f"<{local}{attrs}>")
    if el.text:
        out.append(_text(el.text))
    for child in el:
        _xhtml_element(out, child)
        if child.tail:
            out.append(_text(child.tail))
    out.append(f"</{local}>")
