"""Exclusive C14N of FragmentsToBeHashed reproduces EPS's canonical form, and SignedInfo's shape."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lxml import etree

from eps._v3 import canonical
from eps.signing import digest, signed_info

FRAGMENTS = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps" / "signature-fragments"


@pytest.mark.skipif(not FRAGMENTS.is_dir(), reason="../shared examples not present")
def test_exclusive_c14n_of_eps_fragments_is_eps_canonical_form():
    parser = etree.XMLParser(remove_blank_text=True)
    document = etree.fromstring(
        (FRAGMENTS / "PrepareIntermediate-Hl7V3SignatureFragments.xml").read_bytes(), parser
    )
    want = (FRAGMENTS / "PrepareIntermediate-Hl7V3SignatureFragmentsCanonicalized.txt").read_bytes().strip()
    assert canonical(document) == want


def test_signed_info_is_canonical_with_end_tags():
    info = signed_info("abc=", "RS256").decode()
    assert info == (
        '<SignedInfo xmlns="http://www.w3.org/2000/09/xmldsig#">'
        '<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></CanonicalizationMethod>'
        '<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"></SignatureMethod>'
        "<Reference><Transforms>"
        '<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"></Transform></Transforms>'
        '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></DigestMethod>'
        "<DigestValue>abc=</DigestValue></Reference></SignedInfo>"
    )


def test_digest_is_base64_of_signed_info():
    decoded = base64.b64decode(digest(b"<FragmentsToBeHashed></FragmentsToBeHashed>", "RS1")).decode()
    assert '<DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1">' in decoded
