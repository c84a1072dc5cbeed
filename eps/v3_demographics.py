"""Names, telecoms and addresses: FHIR datatypes to their HL7 V3 elements, as EPS maps them."""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from eps import _v3
from eps._fhir import arr, invalid, obj, opt_text, text

_NAME_USE = {
    "usual": "L",
    "official": "L",
    "temp": "A",
    "anonymous": "A",
    "nickname": "PREFERRED",
    "old": "PREVIOUS",
    "maiden": "PREVIOUS-MAIDEN",
}
_TELECOM_USE = {"home": "HP", "work": "WP", "temp": "HV", "mobile": "MC"}
_ADDRESS_USE = {"home": "H", "work": "WP", "temp": "TMP", "billing": "PST"}
_WHITESPACE = re.compile(r"\s")


def _use(mapping: dict[str, str], value: object, path: str, what: str) -> str | None:
    # EPS tests truthiness: an empty use is no use
    if not value:
        return None
    use = mapping.get(value) if isinstance(value, str) else None
    if use is None:
        raise invalid(f"Unhandled {what} use '{value}'.", f"{path}.use")
    return use


def _strings(value: object, path: str) -> list[str]:
    return [text(item, path) for item in arr(value, path)]


def name(parent: etree._Element, human_name: object, path: str) -> etree._Element:
    """HumanName -> ``<name>``: structured parts if any, else the free text (never both)."""
    source: dict[str, Any] = obj(human_name, path)
    element = _v3.sub(parent, "name", {"use": _use(_NAME_USE, source.get("use"), path, "name")})
    prefix, given = source.get("prefix"), source.get("given")
    family, suffix = source.get("family"), source.get("suffix")
    structured = bool(prefix or given or family or suffix)
    free_text = source.get("text")
    if free_text and not structured:
        _v3.set_text(element, text(free_text, f"{path}.text"))
    # EPS's own key order on its Name object: prefix, given, family, suffix
    if prefix:
        for item in _strings(prefix, f"{path}.prefix"):
            _v3.sub(element, "prefix", text=item)
    if given:
        for item in _strings(given, f"{path}.given"):
            _v3.sub(element, "given", text=item)
    if family:
        _v3.sub(element, "family", text=text(family, f"{path}.family"))
    if suffix:
        for item in _strings(suffix, f"{path}.suffix"):
            _v3.sub(element, "suffix", text=item)
    return element


def telecom(parent: etree._Element, contact_point: object, path: str) -> etree._Element:
    """ContactPoint -> ``<telecom use value>``; the value loses whitespace and gains ``tel:``."""
    source = obj(contact_point, path)
    value = opt_text(source.get("value"), f"{path}.value") if source.get("value") else None
    if value is not None:
        value = _WHITESPACE.sub("", value)
        if not value.startswith("tel:"):
            value = f"tel:{value}"
    use = _use(_TELECOM_USE, source.get("use"), path, "telecom")
    return _v3.sub(parent, "telecom", {"use": use, "value": value})


def address(parent: etree._Element, fhir_address: object, path: str) -> etree._Element:
    """Address -> ``<addr>``: line, city, district and state all become street address lines."""
    source = obj(fhir_address, path)
    lines: list[str] = []
    raw_lines = source.get("line")
    parts = list(raw_lines) if isinstance(raw_lines, list) else [raw_lines]
    parts += [source.get("city"), source.get("district"), source.get("state")]
    for part in parts:
        if part:  # EPS drops falsy parts (missing or empty)
            lines.append(text(part, f"{path}.line"))
    element = _v3.sub(parent, "addr", {"use": _use(_ADDRESS_USE, source.get("use"), path, "address")})
    for line in lines:
        _v3.sub(element, "streetAddressLine", text=line)
    postal_code = source.get("postalCode")
    if postal_code:
        _v3.sub(element, "postalCode", text=text(postal_code, f"{path}.postalCode"))
    return element
