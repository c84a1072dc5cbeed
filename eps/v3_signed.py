"""A signed HL7 V3 ParentPrescription: the fragments its prescriber signed, and their check.

This is how EPS checks a prescription it already holds (its coordinator turns even a FHIR
message into a ParentPrescription first): the signature sits in
``pertinentPrescription/author/signatureText``, and the fragments are rebuilt from the same
message, following EPS's rules:

- Fragment 1: ``author/time`` then ``pertinentPrescription/id[0]``
- Fragment 2: ``author/AgentPerson``
- Fragment 3: the message's ``recordTarget``
- one Fragment per ``pertinentInformation2/pertinentLineItem``, without its
  ``pertinentInformation4`` (the item status, which changes after signing) and with
  ``repeatNumber`` cut down to its ``high`` (the issue counter, ``low``, moves too)

Each fragment is a copy in the ``urn:hl7-org:v3`` namespace (messages on file often carry no
namespace); ``FragmentsToBeHashed`` and ``Fragment`` themselves are in none. Whitespace-only
text and comments are dropped, as EPS's XML model drops them; other text is kept verbatim.
Children keep document order (EPS's model would group same-named siblings that are apart; EPS
never writes such V3, and the signed examples verify in document order).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from lxml import etree

from eps.verify import SignatureCheck, verify_signature
from eps.xmldsig import DSIG_NS, SignatureProblem, SignatureRejected, canonical, parse_xml

HL7_V3 = "urn:hl7-org:v3"
# Not FHIRPath (there is no FHIR resource here), but the same kind of pointer for an operator.
V3_SIGNATURE_EXPRESSION = (
    "ParentPrescription.pertinentInformation1.pertinentPrescription.author.signatureText"
)


def verify_v3_prescription(
    xml: bytes,
    *,
    now: datetime | None = None,
    trust_anchors: Sequence[x509.Certificate] | None = None,
) -> SignatureCheck:
    """Verify the prescriber's signature inside a signed ParentPrescription (default ``now``: now)."""
    root = _parent_prescription(parse_xml(xml, "the prescription", V3_SIGNATURE_EXPRESSION))
    signature = _signature_of(root)
    fragments = fragments_from_parent_prescription(root)
    return verify_signature(
        etree.tostring(signature, with_tail=False),
        fragments,
        now=now or datetime.now(UTC),
        trust_anchors=trust_anchors,
        expression=V3_SIGNATURE_EXPRESSION,
    )


def fragments_from_parent_prescription(root: etree._Element) -> bytes:
    """The exclusive-C14N bytes of the FragmentsToBeHashed EPS builds from this prescription."""
    prescription = _path(root, "pertinentInformation1", "pertinentPrescription")
    author = _path(prescription, "author")
    ids = _children(prescription, "id")
    if not ids:
        raise _missing("pertinentPrescription/id")

    fragments = etree.Element("FragmentsToBeHashed")
    _fragment(fragments, _path(author, "time"), ids[0])
    _fragment(fragments, _path(author, "AgentPerson"))
    _fragment(fragments, _path(root, "recordTarget"))
    for relationship in _children(prescription, "pertinentInformation2"):
        for line_item in _children(relationship, "pertinentLineItem"):
            _fragment(fragments, line_item, line_item_rules=True)
    return canonical(fragments)


def _parent_prescription(root: etree._Element) -> etree._Element:
    # on its own (the files on record) or inside a Spine interaction's ControlActEvent/subject
    if etree.QName(root).localname == "ParentPrescription":
        return root
    for el in root.iter("{*}ParentPrescription", "ParentPrescription"):
        return el
    raise _missing("ParentPrescription")


def _signature_of(root: etree._Element) -> etree._Element:
    text = _path(root, "pertinentInformation1", "pertinentPrescription", "author", "signatureText")
    found = text.findall(f"{{{DSIG_NS}}}Signature")
    if len(found) != 1:
        raise SignatureRejected(
            SignatureProblem.MALFORMED,
            f"signatureText must hold one XML-DSig Signature (found {len(found)})",
            V3_SIGNATURE_EXPRESSION,
        )
    return found[0]


def _fragment(parent: etree._Element, *sources: etree._Element, line_item_rules: bool = False) -> None:
    fragment = etree.SubElement(parent, "Fragment")
    for source in sources:
        fragment.append(_v3_copy(source, line_item_rules))


def _v3_copy(source: etree._Element, line_item_rules: bool) -> etree._Element:
    """``source`` rebuilt element by element in the V3 namespace (its default namespace)."""
    top = etree.Element(_v3_name(source), nsmap={None: HL7_V3})
    stack = [(source, top)]
    while stack:  # iterative: a hostile, deeply nested message must not exhaust the C stack
        src, dst = stack.pop()
        for name, value in src.attrib.items():
            dst.set(name, value)
        dst.text = src.text if src.text and src.text.strip() else None
        children = [c for c in src if isinstance(c.tag, str)]  # comments and PIs are not signed
        if line_item_rules and src is source:
            children = [c for c in children if etree.QName(c).localname != "pertinentInformation4"]
        trim_repeat = (
            line_item_rules and src.getparent() is source and etree.QName(src).localname == "repeatNumber"
        )
        if trim_repeat:
            dst.attrib.clear()
            dst.text = None
            children = [c for c in children if etree.QName(c).localname == "high"]
        for child in children:
            copied = etree.SubElement(dst, _v3_name(child))
            # the signed parts hold no mixed content; should some appear, its text is kept, so a
            # change to it is a digest mismatch rather than silently unsigned
            stack.append((child, copied))
            if child.tail and child.tail.strip():
                copied.tail = child.tail
    return top


def _v3_name(el: etree._Element) -> str:
    qname = etree.QName(el)
    return f"{{{HL7_V3}}}{qname.localname}" if qname.namespace in (None, HL7_V3) else el.tag


def _children(parent: etree._Element, local: str) -> list[etree._Element]:
    # the V3 messages on file carry no namespace, Spine's carry urn:hl7-org:v3: accept either
    return [
        c
        for c in parent
        if isinstance(c.tag, str)
        and etree.QName(c).localname == local
        and etree.QName(c).namespace in (None, HL7_V3)
    ]


def _path(el: etree._Element, *steps: str) -> etree._Element:
    start = etree.QName(el).localname
    for i, step in enumerate(steps):
        found = _children(el, step)
        if not found:
            raise _missing("/".join([start, *steps[: i + 1]]))
        el = found[0]
    return el


def _missing(what: str) -> SignatureRejected:
    return SignatureRejected(
        SignatureProblem.MALFORMED, f"the prescription has no {what}", V3_SIGNATURE_EXPRESSION
    )
