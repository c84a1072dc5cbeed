"""From signature fragments to the digest a prescriber signs, byte for byte as EPS makes it.

FragmentsToBeHashed (unnamespaced; each fragment keeps its V3 default namespace) is
canonicalised with exclusive C14N and hashed; the base64 hash goes into an XML-DSig SignedInfo
(exclusive C14N, RSA-SHA1 or RSA-SHA256), which is canonicalised the same way and base64'd.
Canonical form writes every element with an end tag and sorts attributes, which is exactly what
EPS's xml-js -> xmldom -> xml-c14n chain produces.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from lxml import etree

from eps._v3 import canonical
from eps.fragments import Fragments

DSIG = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
# per algorithm name ("RS1"/"RS256"): hash function, SignatureMethod, DigestMethod
ALGORITHMS = {
    "RS1": (hashlib.sha1, f"{DSIG}rsa-sha1", f"{DSIG}sha1"),
    "RS256": (
        hashlib.sha256,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ),
}


def fragments_to_be_hashed(fragments: Fragments) -> bytes:
    """Canonical ``<FragmentsToBeHashed>``: [time, id], AgentPerson, recordTarget, each line item."""
    groups: list[Iterable[etree._Element]] = [
        (fragments.time_element, fragments.id),
        (fragments.agent_person,),
        (fragments.record_target,),
        *((item,) for item in fragments.line_items),
    ]
    top = etree.Element("FragmentsToBeHashed")
    for group in groups:
        holder = etree.SubElement(top, "Fragment")
        for element in group:
            holder.append(element)  # moves the element; fragments are built fresh per call
    return canonical(top)


def signed_info(digest_value: str, algorithm: str) -> bytes:
    """Canonical XML-DSig ``<SignedInfo>`` over one reference with ``digest_value``."""
    _, signature_method, digest_method = ALGORITHMS[algorithm]
    info = etree.Element(f"{{{DSIG}}}SignedInfo", nsmap={None: DSIG})
    etree.SubElement(info, f"{{{DSIG}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(info, f"{{{DSIG}}}SignatureMethod", Algorithm=signature_method)
    reference = etree.SubElement(info, f"{{{DSIG}}}Reference")
    transforms = etree.SubElement(reference, f"{{{DSIG}}}Transforms")
    etree.SubElement(transforms, f"{{{DSIG}}}Transform", Algorithm=EXC_C14N)
    etree.SubElement(reference, f"{{{DSIG}}}DigestMethod", Algorithm=digest_method)
    etree.SubElement(reference, f"{{{DSIG}}}DigestValue").text = digest_value
    return canonical(info)


def digest_value(canonical_fragments: bytes, algorithm: str) -> str:
    """Base64 of the fragments' hash (SHA-1 for RS1, SHA-256 for RS256)."""
    hash_function = ALGORITHMS[algorithm][0]
    return base64.b64encode(hash_function(canonical_fragments).digest()).decode("ascii")


def digest(canonical_fragments: bytes, algorithm: str) -> str:
    """The $prepare ``digest``: base64 of the canonical SignedInfo over the fragments."""
    info = signed_info(digest_value(canonical_fragments, algorithm), algorithm)
    return base64.b64encode(info).decode("ascii")
