"""eps.xmldsig: what a Signature must look like before any cryptography runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from eps.xmldsig import (
    DSIG_NS,
    RSA_SHA1,
    RSA_SHA256,
    SHA1,
    SHA256,
    SignatureProblem,
    SignatureRejected,
    canonical,
    decode_base64,
    parse_signature,
    parse_xml,
    signed_info_forms,
)
from proxy.errors import FhirError
from tests.unit.eps.xmldsig_signer import prescriber, signature_xml

FRAGMENTS = Path(__file__).resolve().parents[3].parent / "shared" / "examples" / "eps" / "signature-fragments"


def parsed(xml: bytes):
    return parse_signature(parse_xml(xml, "the signature"))


def problem_of(xml: bytes) -> SignatureProblem:
    with pytest.raises(SignatureRejected) as caught:
        parsed(xml)
    return caught.value.problem


def good(algorithm: str = "RS1", **overrides) -> bytes:
    key, cert = prescriber()
    return signature_xml(b"<FragmentsToBeHashed></FragmentsToBeHashed>", key, cert, algorithm, **overrides)


@pytest.mark.parametrize("algorithm", ["RS1", "RS256"])
def test_a_prepare_shaped_signature_is_read(algorithm):
    sig = parsed(good(algorithm))
    assert sig.algorithm == algorithm
    assert len(sig.digest_value) == (20 if algorithm == "RS1" else 32)
    assert len(sig.signature_value) == 256 and len(sig.certificates) == 1


def test_rejection_is_a_400_operation_outcome_at_the_signature():
    with pytest.raises(FhirError) as caught:
        parsed(b"not xml")
    outcome = caught.value.to_resource()["issue"][0]
    assert caught.value.status == 400
    assert outcome["code"] == "invalid" and outcome["expression"] == ["Provenance.signature.data"]
    assert outcome["diagnostics"].startswith(SignatureProblem.MALFORMED.value)


@pytest.mark.parametrize(
    "sig_method, digest_method",
    [
        (RSA_SHA1, SHA256),  # a pair that disagrees
        (RSA_SHA256, SHA1),
        ("http://www.w3.org/2000/09/xmldsig#rsa-sha224", "http://www.w3.org/2000/09/xmldsig#sha224"),
        ("http://www.w3.org/2000/09/xmldsig#hmac-sha1", SHA1),  # a MAC: anyone with the key "signs"
        ("http://www.w3.org/2000/09/xmldsig#", "http://www.w3.org/2000/09/xmldsig#"),
    ],
)
def test_only_the_two_eps_algorithm_pairs_are_accepted(sig_method, digest_method):
    assert problem_of(good(signature_method=sig_method, digest_method=digest_method)) is (
        SignatureProblem.UNSUPPORTED_ALGORITHM
    )


@pytest.mark.parametrize(
    "old, new",
    [
        (
            b'CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"',
            b'CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"',
        ),
        (
            b'Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"',
            b'Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"',
        ),
    ],
)
def test_other_canonicalisations_and_transforms_are_refused(old, new):
    assert problem_of(good().replace(old, new)) is SignatureProblem.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize(
    "mutate",
    [
        lambda x: x.replace(b"<SignedInfo>", b"<Other>").replace(b"</SignedInfo>", b"</Other>"),
        lambda x: x.replace(b"<Reference>", b'<Reference URI="http://example.org/x">'),
        lambda x: x.replace(b"</Reference>", b"</Reference><Reference/>"),
        lambda x: x.replace(b'xmlns="http://www.w3.org/2000/09/xmldsig#"', b'xmlns="urn:other"'),
        lambda x: x.replace(b"<DigestValue>", b"<DigestValue>*"),
        lambda x: x.split(b"<SignatureValue>")[0] + b"<SignatureValue></SignatureValue></Signature>",
        lambda x: x.replace(b' Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"', b""),
        lambda x: b'<!DOCTYPE Signature [<!ENTITY a "aaaa">]>' + x,
    ],
    ids=[
        "no SignedInfo",
        "Reference URI",
        "two References",
        "wrong namespace",
        "DigestValue not base64",
        "empty SignatureValue",
        "no Algorithm",
        "DOCTYPE",
    ],
)
def test_shapes_eps_does_not_send_are_malformed(mutate):
    assert problem_of(mutate(good())) is SignatureProblem.MALFORMED


def test_base64_may_be_wrapped_as_xml_dsig_allows_but_not_otherwise_dirty():
    assert decode_base64("QUJD\r\n REVG", "x", SignatureProblem.MALFORMED, "e") == b"ABCDEF"
    for bad in ("QUJ", "QU=D", "QUJD$", "é"):
        with pytest.raises(SignatureRejected):
            decode_base64(bad, "x", SignatureProblem.MALFORMED, "e")


def test_signed_info_is_canonicalised_as_it_sits_then_without_whitespace():
    pretty = good().replace(b"<SignedInfo>", b"<SignedInfo>\n  ").replace(b"</Reference>", b"</Reference>\n")
    signature = parse_xml(pretty, "s")
    as_is, compact = signed_info_forms(signature.find(f"{{{DSIG_NS}}}SignedInfo"))
    assert b"\n" in as_is and b"\n" not in compact
    # in the context of its Signature: the inherited default namespace is declared on SignedInfo
    assert compact.startswith(b'<SignedInfo xmlns="http://www.w3.org/2000/09/xmldsig#">')
    plain = parse_xml(good(), "s").find(f"{{{DSIG_NS}}}SignedInfo")
    assert len(signed_info_forms(plain)) == 1


@pytest.mark.skipif(not FRAGMENTS.is_dir(), reason="needs ../shared/examples/eps next to the repository")
def test_lxml_exclusive_c14n_gives_the_canonical_form_eps_hashes():
    """EPS's own pair: FragmentsToBeHashed (pretty-printed) and the exact bytes it hashes."""
    source = (FRAGMENTS / "PrepareIntermediate-Hl7V3SignatureFragments.xml").read_bytes()
    expected = (FRAGMENTS / "PrepareIntermediate-Hl7V3SignatureFragmentsCanonicalized.txt").read_bytes()
    root = etree.fromstring(source, etree.XMLParser(remove_blank_text=True))
    assert canonical(root) == expected.rstrip(b"\n")
