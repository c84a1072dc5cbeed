"""eps.verify.verify_signature and eps.certificates: the checks, in order, each with its reason.

The fragments are EPS's own canonical FragmentsToBeHashed (tests/../shared) when present, else a
small stand-in; the signatures are made at run time with TEST ONLY keys.
"""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eps.certificates import check_trusted, load_trust_anchors
from eps.verify import SignatureCheck, verify_signature
from eps.xmldsig import SignatureProblem, SignatureRejected
from proxy.errors import FhirError
from tests.unit.eps.xmldsig_signer import TRUST, cert, key, prescriber, signature_xml

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "examples" / "eps" / "signature-fragments"
_CANONICAL = SHARED / "PrepareIntermediate-Hl7V3SignatureFragmentsCanonicalized.txt"
FRAGMENTS = (
    _CANONICAL.read_bytes().rstrip(b"\n")
    if _CANONICAL.is_file()
    else (
        b'<FragmentsToBeHashed><Fragment><recordTarget xmlns="urn:hl7-org:v3"><Patient><family>CORY</family>'
        b'</Patient></recordTarget></Fragment><Fragment><pertinentLineItem xmlns="urn:hl7-org:v3">'
        b'<quantity unit="1" value="63"></quantity></pertinentLineItem></Fragment></FragmentsToBeHashed>'
    )
)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def signed(algorithm: str = "RS1", fragments: bytes = FRAGMENTS, **overrides) -> bytes:
    signing_key, certificate = prescriber()
    return signature_xml(fragments, signing_key, certificate, algorithm, **overrides)


def rejection(signature: bytes, fragments: bytes = FRAGMENTS, **kwargs) -> SignatureRejected:
    kwargs.setdefault("now", NOW)
    with pytest.raises(SignatureRejected) as caught:
        verify_signature(signature, fragments, **kwargs)
    assert caught.value.status == 400 and caught.value.expression == ["Provenance.signature.data"]
    return caught.value


@pytest.mark.parametrize("algorithm", ["RS1", "RS256"])
def test_a_good_signature_passes_and_says_who_signed(algorithm):
    check = verify_signature(signed(algorithm), FRAGMENTS, now=NOW)
    assert isinstance(check, SignatureCheck)
    assert check.algorithm == algorithm and not check.trusted
    assert "TEST ONLY Prescriber" in check.signer


def test_an_altered_line_item_does_not_match_the_signature():
    assert b'value="63"' in FRAGMENTS
    altered = FRAGMENTS.replace(b'value="63"', b'value="630"', 1)
    assert rejection(signed(), altered).problem is SignatureProblem.DIGEST_MISMATCH


def test_an_altered_patient_does_not_match_the_signature():
    altered = FRAGMENTS.replace(b"<family>CORY</family>", b"<family>COREY</family>")
    assert altered != FRAGMENTS
    err = rejection(signed(), altered)
    assert err.problem is SignatureProblem.DIGEST_MISMATCH
    assert err.diagnostics.startswith("the signature does not match the prescription")


def test_fragments_are_hashed_as_given_not_recanonicalised():
    # whitespace is a change to the bytes the prescriber signed: it is the caller's job to
    # canonicalise, and a verifier that "helped" would accept what was not signed
    assert (
        rejection(signed(), FRAGMENTS.replace(b"><", b"> <", 1)).problem is SignatureProblem.DIGEST_MISMATCH
    )


def test_a_signature_by_another_key_than_the_certificates_is_invalid():
    forged = signature_xml(FRAGMENTS, key("test-only-other-key.pem"), cert("test-only-prescriber-cert.pem"))
    err = rejection(forged)
    assert err.problem is SignatureProblem.SIGNATURE_INVALID
    assert err.diagnostics.startswith("the signature value is invalid")


def test_a_recomputed_digest_cannot_be_re_signed_without_the_key():
    # the attack a digest check alone would miss: alter the prescription, put its new digest
    # into SignedInfo; the prescriber's signature no longer covers that SignedInfo
    altered = FRAGMENTS.replace(b"<family>CORY</family>", b"<family>MALLORY</family>")
    original = signed()
    old = base64.b64encode(hashlib.sha1(FRAGMENTS).digest())
    new = base64.b64encode(hashlib.sha1(altered).digest())
    assert old in original
    assert rejection(original.replace(old, new), altered).problem is SignatureProblem.SIGNATURE_INVALID


def test_a_corrupted_signature_value_is_invalid():
    tampered = signed().replace(b"<SignatureValue>", b"<SignatureValue>AAAA", 1)
    assert rejection(tampered).problem is SignatureProblem.SIGNATURE_INVALID


def test_a_pretty_printed_signed_info_still_verifies():
    pretty = (
        signed().replace(b"<Reference>", b"\n    <Reference>").replace(b"</SignedInfo>", b"\n  </SignedInfo>")
    )
    assert verify_signature(pretty, FRAGMENTS, now=NOW).algorithm == "RS1"


@pytest.mark.parametrize(
    "certificate_xml",
    [
        b"",
        b"<X509Certificate></X509Certificate>",
        b"<X509Certificate>bm90IGEgY2VydGlmaWNhdGU=</X509Certificate>",
        b"<X509Certificate>-----BEGIN CERTIFICATE-----MIIB-----END CERTIFICATE-----</X509Certificate>",
        b"<X509Certificate>%%%</X509Certificate>",
    ],
    ids=["none", "empty", "not DER", "PEM", "not base64"],
)
def test_a_missing_or_unreadable_certificate_is_refused(certificate_xml):
    signing_key, _ = prescriber()
    signature = signature_xml(FRAGMENTS, signing_key, None).replace(
        b"<X509Data/>", b"<X509Data>" + certificate_xml + b"</X509Data>"
    )
    assert rejection(signature).problem is SignatureProblem.CERTIFICATE_UNUSABLE


def test_two_certificates_are_refused_rather_than_guessing_the_signers():
    signature = signed()
    doubled = signature.replace(b"</X509Data>", b"<X509Certificate>AAAA</X509Certificate></X509Data>")
    assert rejection(doubled).problem is SignatureProblem.CERTIFICATE_UNUSABLE


def test_an_expired_certificate_is_refused():
    signing_key = key("test-only-prescriber-key.pem")
    signature = signature_xml(FRAGMENTS, signing_key, cert("test-only-expired-prescriber-cert.pem"))
    err = rejection(signature)
    assert err.problem is SignatureProblem.CERTIFICATE_EXPIRED
    assert err.diagnostics.startswith("the signing certificate has expired")
    # inside its validity period the same signature is fine: only the date was wrong
    assert verify_signature(signature, FRAGMENTS, now=datetime(2015, 6, 1, tzinfo=UTC))


def test_a_certificate_not_yet_valid_is_refused():
    err = rejection(signed(), now=datetime(2023, 12, 31, tzinfo=UTC))
    assert err.problem is SignatureProblem.CERTIFICATE_NOT_YET_VALID


def test_trust_anchors_from_a_folder_of_pem_and_der():
    anchors = load_trust_anchors(TRUST)
    assert sorted(a.subject.rfc4514_string() for a in anchors) == [
        "CN=TEST ONLY Root CA,O=fhirplug TEST ONLY",
        "CN=TEST ONLY Signing CA,O=fhirplug TEST ONLY",
    ]
    check = verify_signature(signed(), FRAGMENTS, now=NOW, trust_anchors=anchors)
    assert check.trusted


def test_a_look_alike_ca_with_the_same_name_is_not_trusted():
    untrusted = signature_xml(
        FRAGMENTS,
        key("test-only-untrusted-prescriber-key.pem"),
        cert("test-only-untrusted-prescriber-cert.pem"),
    )
    assert verify_signature(untrusted, FRAGMENTS, now=NOW)  # a fine signature, by itself
    err = rejection(untrusted, trust_anchors=load_trust_anchors(TRUST))
    assert err.problem is SignatureProblem.CERTIFICATE_UNTRUSTED
    assert err.diagnostics.startswith("the signing certificate is not trusted")


def test_only_the_root_in_the_folder_does_not_vouch_for_a_certificate_its_intermediate_issued():
    root = [a for a in load_trust_anchors(TRUST) if a.subject == a.issuer]
    assert rejection(signed(), trust_anchors=root).problem is SignatureProblem.CERTIFICATE_UNTRUSTED


def test_an_empty_trust_list_trusts_nothing():
    assert rejection(signed(), trust_anchors=[]).problem is SignatureProblem.CERTIFICATE_UNTRUSTED


def test_a_leaf_certificate_is_no_anchor_and_an_expired_ca_vouches_for_nothing():
    leaf = cert("test-only-prescriber-cert.pem")
    intermediate = [a for a in load_trust_anchors(TRUST) if a.subject != a.issuer]
    with pytest.raises(SignatureRejected):
        check_trusted(leaf, [leaf], NOW)
    with pytest.raises(SignatureRejected):
        check_trusted(leaf, intermediate, datetime(2050, 1, 1, tzinfo=UTC))
    assert check_trusted(leaf, intermediate, NOW) == intermediate[0]


def test_trust_folder_configuration_errors_say_which_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_trust_anchors(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="holds no certificates"):
        load_trust_anchors(tmp_path)
    (tmp_path / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="broken.pem"):
        load_trust_anchors(tmp_path)


def test_the_checks_run_in_order_so_a_tampered_prescription_is_named_as_such():
    # an altered prescription signed by the wrong key with an expired certificate: the digest
    # is what the caller needs to hear about first
    forged = signature_xml(
        FRAGMENTS, key("test-only-other-key.pem"), cert("test-only-expired-prescriber-cert.pem")
    )
    altered = FRAGMENTS.replace(b"<family>CORY</family>", b"<family>X</family>")
    assert rejection(forged, altered).problem is SignatureProblem.DIGEST_MISMATCH
    assert rejection(forged).problem is SignatureProblem.SIGNATURE_INVALID


def test_garbage_and_truncated_signatures_are_400s_never_crashes():
    good = signed("RS256")
    candidates = [b"", b"\x00\xff" * 50, b"<", b"<Signature/>", "é".encode("latin-1"), b"<a>" * 5000]
    candidates += [good[:n] for n in range(0, len(good), 7)]
    rng = random.Random(12)
    for _ in range(300):
        flipped = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        if flipped != good:
            candidates.append(bytes(flipped))
    passed = 0
    for candidate in candidates:
        try:
            verify_signature(candidate, FRAGMENTS, now=NOW, trust_anchors=load_trust_anchors(TRUST))
            passed += 1
        except FhirError as e:
            assert e.status == 400
    assert passed == 0  # with trust anchors even the certificate's own bytes are covered
    with pytest.raises(SignatureRejected):
        verify_signature("<Signature/>", FRAGMENTS, now=NOW)  # type: ignore[arg-type]
