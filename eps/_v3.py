"""Building HL7 V3 elements with lxml so that they canonicalise exactly as EPS's do.

EPS writes its fragments with xml-js, parses them back with xmldom and canonicalises with
xml-c14n. What survives that round trip, and so what we must reproduce:

- text is kept as given, except that an XML parser turns ``\\r\\n`` and a lone ``\\r`` into
  ``\\n`` (xmldom does; the canonical form would otherwise carry ``&#xD;``);
- attribute values have runs of tabs/form feeds and each (CR)LF replaced by one space before
  writing (EPS's ``canonicaliseAttribute``), and a parser normalises any remaining CR to a space;
- an attribute whose value is ``undefined`` is not written at all, so ``None`` means "absent";
- element order is the order EPS's model objects acquired their keys, which each builder
  follows by hand; attribute order does not matter (canonicalisation sorts them).
"""

from __future__ import annotations

import re

from lxml import etree

from eps._fhir import invalid

V3 = "urn:hl7-org:v3"
_NSMAP = {None: V3}

# code systems (OIDs) of the V3 data types EPS's fragments use
SNOMED = "2.16.840.1.113883.2.1.3.2.4.15"
SDS_ORGANIZATION = "1.2.826.0.1285.0.1.10"
SDS_ROLE_PROFILE = "1.2.826.0.1285.0.2.0.67"
SDS_JOB_ROLE = "1.2.826.0.1285.0.2.1.104"
AGENT_PERSON_ID = "1.2.826.0.1285.0.2.1.54"
ORGANIZATION_TYPE = "2.16.840.1.113883.2.1.3.2.4.17.94"
NHS_NUMBER = "2.16.840.1.113883.2.1.4.1"
SEX = "2.16.840.1.113883.2.1.3.2.4.16.25"
PATIENT_CARE_PROVISION_TYPE = "2.16.840.1.113883.2.1.3.2.4.17.37"
PRESCRIPTION_ANNOTATION = "2.16.840.1.113883.2.1.3.2.4.17.30"
PRESCRIPTION_ENDORSEMENT = "2.16.840.1.113883.2.1.3.2.4.16.32"

_TABS = re.compile(r"[\t\f]+")
_NEWLINES = re.compile(r"\r?\n")
# EPS's isUUID is unanchored: any value *containing* a UUID is upper-cased whole
_CONTAINS_UUID = re.compile(r"[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}", re.I)

Attrs = dict[str, str | None]


def _attr_value(value: str) -> str:
    value = _NEWLINES.sub(" ", _TABS.sub(" ", value))
    return value.replace("\r", " ")


def _text_value(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _set_attrs(element: etree._Element, attrs: Attrs | None) -> None:
    if not attrs:
        return
    for name, value in attrs.items():
        if value is not None:
            try:
                element.set(name, _attr_value(value))
            except ValueError as exc:  # a control character XML cannot carry
                raise invalid(f"Value not allowed in XML: {value!r}.", name) from exc


def root(tag: str, attrs: Attrs | None = None) -> etree._Element:
    """A fragment's top element, carrying the V3 default namespace as EPS's ``namespacedCopyOf``."""
    element = etree.Element(f"{{{V3}}}{tag}", nsmap=_NSMAP)
    _set_attrs(element, attrs)
    return element


def sub(
    parent: etree._Element, tag: str, attrs: Attrs | None = None, text: str | None = None
) -> etree._Element:
    element = etree.SubElement(parent, f"{{{V3}}}{tag}")
    _set_attrs(element, attrs)
    if text is not None:
        set_text(element, text)
    return element


def set_text(element: etree._Element, value: str) -> None:
    try:
        element.text = _text_value(value)
    except ValueError as exc:
        raise invalid(f"Value not allowed in XML: {value!r}.", etree.QName(element).localname) from exc


def identifier(parent: etree._Element, tag: str, root_oid: str, extension: str | None) -> etree._Element:
    return sub(parent, tag, {"root": root_oid, "extension": extension})


def global_identifier(value: str) -> str:
    """EPS's GlobalIdentifier: UUIDs (or anything containing one) are written in upper case."""
    return value.upper() if _CONTAINS_UUID.search(value) else value


def code(
    parent: etree._Element, tag: str, system: str, value: str | None, display: str | None = None
) -> etree._Element:
    return sub(parent, tag, {"codeSystem": system, "code": value, "displayName": display})


def canonical(element: etree._Element) -> bytes:
    """Exclusive C14N (without comments), the form EPS hashes."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
