"""eps.v3_signed: EPS's signed HL7 V3 test prescriptions, and the fragment rules on small ones.

What EPS's own tests assert about these files (packages/coordinator/tests/services/verification/
signature-verification.spec.ts): ValidSignature raises neither "Signature is invalid" nor
"Signature doesn't match prescription"; SignatureAlgorithmSha256 does not raise "Signature is
invalid" (its digest is not asserted); SignatureIsInvalid and SignatureDoesNotMatchPrescription are
loaded but not asserted on there (SignatureIsInvalid serves the revocation tests).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from eps.v3_signed import V3_SIGNATURE_EXPRESSION, fragments_from_parent_prescription, verify_v3_prescription
from eps.xmldsig import SignatureProblem, SignatureRejected
from proxy.errors import FhirError

SIGNED = (
    Path(__file__).resolve().parents[3].parent / "shared" / "examples" / "eps" / "signed-prescriptions-hl7v3"
)
needs_shared = pytest.mark.skipif(
    not SIGNED.is_dir(), reason="needs ../shared/examples/eps next to the repository"
)

# the signing times in the files (author/time), inside each certificate's validity period
SIGNED_2021 = datetime(2021, 7, 26, 12, 5, 22, tzinfo=UTC)
SIGNED_2023 = datetime(2023, 4, 21, 12, 4, tzinfo=UTC)


def example(name: str) -> bytes:
    return (SIGNED / f"{name}.xml").read_bytes()


def rejection(xml: bytes, now: datetime | None = SIGNED_2021) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as caught:
        verify_v3_prescription(xml, now=now)
    assert caught.value.status == 400 and caught.value.expression == [V3_SIGNATURE_EXPRESSION]
    return caught.value


@needs_shared
def test_valid_signature_passes_digest_and_signature_at_its_signing_time():
    check = verify_v3_prescription(example("ValidSignature"), now=SIGNED_2021)
    assert check.algorithm == "RS1"
    assert check.signer == "CN=John Smith,CN=NHS INT Level 2D,OU=CA,O=nhs"


@needs_shared
def test_valid_signature_today_is_refused_for_its_expired_certificate():
    # the certificate ran out on 2022-07-08: everything else checks, the date does not
    err = rejection(example("ValidSignature"), now=None)
    assert err.problem is SignatureProblem.CERTIFICATE_EXPIRED
    assert "2022-07-08T15:22:47" in err.diagnostics


@needs_shared
def test_signature_does_not_match_prescription_is_a_digest_mismatch():
    # its DigestValue was changed after signing (the SignatureValue is ValidSignature's): the
    # digest check is first, so that is the reason given
    err = rejection(example("SignatureDoesNotMatchPrescription"))
    assert err.problem is SignatureProblem.DIGEST_MISMATCH


@needs_shared
def test_signature_is_invalid_has_a_certificate_whose_key_did_not_sign():
    # ValidSignature's SignedInfo and SignatureValue with another prescriber's certificate
    assert rejection(example("SignatureIsInvalid")).problem is SignatureProblem.SIGNATURE_INVALID


@needs_shared
def test_sha256_example_as_stored_does_not_match_because_a_formatter_wrapped_its_text():
    # The file was pretty-printed after signing, and the formatter wrapped the long
    # additional-instructions text over three lines: the fragments now differ from what was
    # signed. EPS's own test only asserts the signature value; so does the next test.
    assert rejection(example("SignatureAlgorithmSha256"), now=SIGNED_2023).problem is (
        SignatureProblem.DIGEST_MISMATCH
    )


def _unwrap_additional_instructions(xml: bytes) -> bytes:
    def unwrap(match: re.Match[bytes]) -> bytes:
        return re.sub(rb"\s*\n\s*", b" ", match.group(0))

    repaired, count = re.subn(rb"<value>&lt;medication&gt;.*?</value>", unwrap, xml, flags=re.S)
    assert count == 1
    return repaired


@needs_shared
def test_sha256_example_verifies_once_the_wrapped_text_is_put_back_on_one_line():
    check = verify_v3_prescription(
        _unwrap_additional_instructions(example("SignatureAlgorithmSha256")), now=SIGNED_2023
    )
    assert check.algorithm == "RS256"
    assert check.signer == "CN=555073168108_Assurance_TeamTwo,OU=People,O=nhs"


@needs_shared
@pytest.mark.parametrize(
    "old, new",
    [
        (b"<given>DONOTUSE</given>", b"<given>DO</given>"),  # the patient
        (b"<family>XXTESTPATIENT-TGNP</family>", b"<family>X</family>"),
        (b'<time value="20210726120522"/>', b'<time value="20210726120523"/>'),  # the signing time
    ],
)
def test_changes_to_signed_parts_are_digest_mismatches(old, new):
    xml = example("ValidSignature")
    assert old in xml
    assert rejection(xml.replace(old, new, 1)).problem is SignatureProblem.DIGEST_MISMATCH


@needs_shared
def test_the_prescribers_name_is_signed():
    xml = example("ValidSignature")
    root = etree.fromstring(xml)
    author = root.find("pertinentInformation1/pertinentPrescription/author")
    author.find("AgentPerson/agentPerson/name/given").text = "different"
    assert rejection(etree.tostring(root)).problem is SignatureProblem.DIGEST_MISMATCH


@needs_shared
def test_a_line_item_status_added_later_is_not_signed():
    status = (
        b'<pertinentInformation4 typeCode="PERT"><pertinentItemStatus classCode="OBS" moodCode="EVN">'
        b'<value code="0001" codeSystem="2.16.840.1.113883.2.1.3.2.4.17.23"/></pertinentItemStatus>'
        b"</pertinentInformation4></pertinentLineItem>"
    )
    xml = example("ValidSignature").replace(b"</pertinentLineItem>", status)
    assert verify_v3_prescription(xml, now=SIGNED_2021)


@needs_shared
def test_a_namespaced_prescription_inside_an_interaction_verifies_the_same():
    xml = example("ValidSignature").replace(
        b'<ParentPrescription classCode="INFO"',
        b'<ParentPrescription xmlns="urn:hl7-org:v3" classCode="INFO"',
        1,
    )
    wrapped = b'<PORX_IN020101SM31 xmlns="urn:hl7-org:v3"><ControlActEvent><subject>' + xml + b"</subject>"
    wrapped += b"</ControlActEvent></PORX_IN020101SM31>"
    assert verify_v3_prescription(wrapped, now=SIGNED_2021)


SMALL = b"""<ParentPrescription>
  <!-- not signed -->
  <recordTarget typeCode="RCT"><Patient><id extension="9449305552"/></Patient></recordTarget>
  <pertinentInformation1>
    <pertinentPrescription>
      <id root="A"/>
      <id extension="B"/>
      <author>
        <time value="20240101120000"/>
        <signatureText/>
        <AgentPerson classCode="AGNT"><name>  Dr  X  </name></AgentPerson>
      </author>
      <pertinentInformation2>
        <pertinentLineItem classCode="SBADM">
          <id root="L1"/>
          <repeatNumber unit="1"><low value="1"/><high value="6"/></repeatNumber>
          <pertinentInformation4><pertinentItemStatus/></pertinentInformation4>
        </pertinentLineItem>
      </pertinentInformation2>
      <pertinentInformation2>
        <pertinentLineItem><id root="L2"/></pertinentLineItem>
      </pertinentInformation2>
    </pertinentPrescription>
  </pertinentInformation1>
</ParentPrescription>"""


def test_fragments_follow_eps_rules_exactly():
    v3 = 'xmlns="urn:hl7-org:v3"'
    expected = (
        f"<FragmentsToBeHashed>"
        f'<Fragment><time {v3} value="20240101120000"></time><id {v3} root="A"></id></Fragment>'
        f'<Fragment><AgentPerson {v3} classCode="AGNT"><name>  Dr  X  </name></AgentPerson></Fragment>'
        f'<Fragment><recordTarget {v3} typeCode="RCT"><Patient><id extension="9449305552"></id></Patient>'
        f"</recordTarget></Fragment>"
        # the status is gone; repeatNumber keeps only its high (no low, no attributes)
        f'<Fragment><pertinentLineItem {v3} classCode="SBADM"><id root="L1"></id>'
        f'<repeatNumber><high value="6"></high></repeatNumber></pertinentLineItem></Fragment>'
        f'<Fragment><pertinentLineItem {v3}><id root="L2"></id></pertinentLineItem></Fragment>'
        f"</FragmentsToBeHashed>"
    )
    assert fragments_from_parent_prescription(etree.fromstring(SMALL)).decode() == expected


# a Signature element (empty) so that extraction, not the signature lookup, meets the gap
STUB_SIGNED = SMALL.replace(
    b"<signatureText/>",
    b'<signatureText><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/></signatureText>',
)


@pytest.mark.parametrize(
    "xml, says",
    [
        (b"", "not well-formed"),
        (b"garbage", "not well-formed"),
        (b"<ParentPrescription/>", "no ParentPrescription/pertinentInformation1"),
        (SMALL, "found 0"),
        (
            STUB_SIGNED.replace(b"<recordTarget", b"<elsewhere").replace(b"</recordTarget>", b"</elsewhere>"),
            "no ParentPrescription/recordTarget",
        ),
        (
            STUB_SIGNED.replace(b'<id root="A"/>', b"").replace(b'<id extension="B"/>', b""),
            "no pertinentPrescription/id",
        ),
        (STUB_SIGNED.replace(b'<time value="20240101120000"/>', b""), "no author/time"),
        (STUB_SIGNED, "SignedInfo"),
        (b"<x>" * 100_000 + b"</x>" * 100_000, "not well-formed"),
    ],
    ids=[
        "empty",
        "garbage",
        "bare",
        "unsigned",
        "no recordTarget",
        "no id",
        "no time",
        "empty Signature",
        "deep",
    ],
)
def test_malformed_prescriptions_are_400s_that_say_what_is_missing(xml, says):
    err = rejection(xml)
    assert err.problem is SignatureProblem.MALFORMED and says in err.diagnostics


@needs_shared
def test_truncated_prescriptions_are_400s_never_crashes():
    xml = example("SignatureAlgorithmSha256")
    for n in range(0, len(xml), 97):
        with pytest.raises(FhirError) as caught:
            verify_v3_prescription(xml[:n], now=SIGNED_2023)
        assert caught.value.status == 400
