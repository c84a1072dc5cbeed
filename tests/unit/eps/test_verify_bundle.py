"""eps.verify.verify_bundle_signature: the FHIR message adapter, with a stub for the fragments.

A stub stands in for eps.prepare.fragments_to_hash here: one Fragment per resource, its JSON as
text, so changing a line item or the patient changes the bytes, as it does in EPS's fragments.
test_verify_prepared.py checks the adapter with the real fragments.
"""

from __future__ import annotations

import base64
import copy
import json
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from eps.certificates import load_trust_anchors
from eps.verify import verify_bundle_signature
from eps.xmldsig import SignatureProblem, SignatureRejected
from proxy.errors import FhirError
from tests.unit.eps.xmldsig_signer import TRUST, cert, key, prescriber, signature_xml

NOW = datetime(2025, 6, 1, tzinfo=UTC)
EXAMPLE = (
    Path(__file__).resolve().parents[3].parent
    / "shared/examples/eps"
    / "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Process-Request-Send-200_OK.json"
)
ROLE = "urn:uuid:56166769-c1c4-4d07-afa8-132b5dfca666"


def stub_fragments(bundle: object) -> bytes:
    assert isinstance(bundle, dict)
    root = etree.Element("FragmentsToBeHashed")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] in ("MedicationRequest", "Patient", "PractitionerRole"):
            etree.SubElement(root, "Fragment").text = json.dumps(resource, sort_keys=True)
    return etree.tostring(root, method="c14n", exclusive=True)


def message(signature_data: str | None = None, **signature_fields) -> dict:
    line = {
        "resourceType": "MedicationRequest",
        "id": "a54219b8",
        "requester": {"reference": ROLE},
        "subject": {"reference": "urn:uuid:78d3c2eb"},
        "medicationCodeableConcept": {"coding": [{"code": "39720311000001101"}]},
        "dispenseRequest": {"quantity": {"value": 28}},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {"fullUrl": "urn:uuid:17773b27", "resource": {"resourceType": "MessageHeader"}},
            {"fullUrl": "urn:uuid:a54219b8", "resource": line},
            {"fullUrl": "urn:uuid:6989b7bd", "resource": {**line, "id": "6989b7bd"}},
            {
                "fullUrl": "urn:uuid:78d3c2eb",
                "resource": {"resourceType": "Patient", "identifier": [{"value": "9449305552"}]},
            },
            {"fullUrl": ROLE, "resource": {"resourceType": "PractitionerRole"}},
        ],
    }
    signature = {"when": "2025-05-31T10:00:00+00:00", "who": {"reference": ROLE}, **signature_fields}
    if signature_data is None:
        signing_key, certificate = prescriber()
        signature_data = base64.b64encode(
            signature_xml(stub_fragments(bundle), signing_key, certificate)
        ).decode()
    signature["data"] = signature_data
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "urn:uuid:a54219b8"}, {"reference": "urn:uuid:6989b7bd"}],
        "signature": [signature],
    }
    bundle["entry"].append({"fullUrl": "urn:uuid:28828c55", "resource": provenance})
    return bundle


def rejection(bundle: object, **kwargs) -> SignatureRejected:
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("fragments", stub_fragments)
    with pytest.raises(SignatureRejected) as caught:
        verify_bundle_signature(bundle, **kwargs)
    assert caught.value.status == 400 and caught.value.expression
    return caught.value


def test_a_signed_message_verifies_with_trust_anchors():
    check = verify_bundle_signature(
        message(),
        now=NOW,
        fragments=stub_fragments,
        trust_anchors=load_trust_anchors(TRUST),
    )
    assert check.trusted and check.algorithm == "RS1" and "TEST ONLY Prescriber" in check.signer


def test_the_message_itself_is_not_changed_by_verifying():
    bundle = message()
    before = copy.deepcopy(bundle)
    verify_bundle_signature(bundle, now=NOW, fragments=stub_fragments)
    assert bundle == before


def test_a_changed_line_item_is_a_digest_mismatch():
    bundle = message()
    bundle["entry"][2]["resource"]["dispenseRequest"]["quantity"]["value"] = 280
    err = rejection(bundle)
    assert err.problem is SignatureProblem.DIGEST_MISMATCH and err.expression == ["Provenance.signature.data"]


def test_a_changed_patient_is_a_digest_mismatch():
    bundle = message()
    bundle["entry"][3]["resource"]["identifier"][0]["value"] = "9999999999"
    assert rejection(bundle).problem is SignatureProblem.DIGEST_MISMATCH


def _signed_by(signing_key, certificate) -> dict:
    bundle = message()
    data = base64.b64encode(signature_xml(stub_fragments(_strip(bundle)), signing_key, certificate)).decode()
    bundle["entry"][-1]["resource"]["signature"][0]["data"] = data
    return bundle


def _strip(bundle: dict) -> dict:
    return {**bundle, "entry": [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Provenance"]}


def test_a_signature_by_a_key_other_than_the_certificates_is_invalid():
    bundle = _signed_by(key("test-only-other-key.pem"), cert("test-only-prescriber-cert.pem"))
    assert rejection(bundle).problem is SignatureProblem.SIGNATURE_INVALID


def test_an_expired_certificate_is_refused():
    bundle = _signed_by(key("test-only-prescriber-key.pem"), cert("test-only-expired-prescriber-cert.pem"))
    assert rejection(bundle).problem is SignatureProblem.CERTIFICATE_EXPIRED


def test_an_untrusted_chain_is_refused_when_anchors_are_configured():
    bundle = _signed_by(
        key("test-only-untrusted-prescriber-key.pem"), cert("test-only-untrusted-prescriber-cert.pem")
    )
    assert verify_bundle_signature(bundle, now=NOW, fragments=stub_fragments)  # no anchors: not asked
    err = rejection(bundle, trust_anchors=load_trust_anchors(TRUST))
    assert err.problem is SignatureProblem.CERTIFICATE_UNTRUSTED


def test_the_requesters_signature_is_chosen_among_several():
    bundle = message()
    provenance = bundle["entry"][-1]["resource"]
    provenance["signature"].insert(0, {"who": {"reference": "urn:uuid:someone-else"}, "data": "bm90IGl0"})
    assert verify_bundle_signature(bundle, now=NOW, fragments=stub_fragments)


def test_without_a_who_the_provenance_covering_the_prescription_is_used():
    bundle = message()
    del bundle["entry"][-1]["resource"]["signature"][0]["who"]
    assert verify_bundle_signature(bundle, now=NOW, fragments=stub_fragments)
    bundle["entry"][-1]["resource"]["target"] = [{"reference": "urn:uuid:17773b27"}]
    err = rejection(bundle)
    assert err.problem is SignatureProblem.MALFORMED and err.expression == ["Provenance.signature"]


@pytest.mark.parametrize(
    "mutate, expression",
    [
        (lambda b: b["entry"].pop(), "Provenance"),
        (lambda b: b["entry"][-1]["resource"].pop("signature"), "Provenance.signature"),
        (lambda b: b["entry"][-1]["resource"]["signature"][0].pop("data"), "Provenance.signature.data"),
        (
            lambda b: b["entry"][-1]["resource"]["signature"][0].update(data="%%%not base64"),
            "Provenance.signature.data",
        ),
        (
            lambda b: b["entry"][-1]["resource"]["signature"][0].update(data="bm90IFhNTA=="),
            "Provenance.signature.data",
        ),
        (
            lambda b: b["entry"][-1]["resource"]["signature"].append(
                dict(b["entry"][-1]["resource"]["signature"][0])
            ),
            "Provenance.signature",
        ),
        (lambda b: b.update(entry="nope"), "Bundle.entry"),
        (lambda b: b.update(resourceType="Parameters"), "Bundle"),
    ],
    ids=[
        "no Provenance",
        "no signature",
        "no data",
        "data not base64",
        "data not XML",
        "two signatures",
        "entry not a list",
        "not a Bundle",
    ],
)
def test_missing_or_unreadable_signatures_are_clear_400s(mutate, expression):
    bundle = message()
    mutate(bundle)
    err = rejection(bundle)
    assert err.problem is SignatureProblem.MALFORMED and err.expression == [expression]


@pytest.mark.parametrize(
    "junk", [None, [], "Bundle", 7, {"resourceType": "Bundle", "entry": [None, 1, {"resource": []}]}]
)
def test_any_shape_of_junk_is_a_400(junk):
    with pytest.raises(FhirError) as caught:
        verify_bundle_signature(junk, now=NOW, fragments=stub_fragments)
    assert caught.value.status == 400


def test_the_default_fragments_come_from_eps_prepare_at_call_time(monkeypatch):
    seen = []

    def fragments_to_hash(bundle: object) -> bytes:
        seen.append(bundle)
        return stub_fragments(bundle)

    monkeypatch.setitem(
        sys.modules, "eps.prepare", types.SimpleNamespace(fragments_to_hash=fragments_to_hash)
    )
    assert verify_bundle_signature(message(), now=NOW)
    assert len(seen) == 1


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="needs ../shared/examples/eps next to the repository")
def test_eps_own_process_message_example_carries_an_unsigned_signature():
    # EPS's example shows the shape only: SignatureValue and X509Certificate are empty
    err = rejection(json.loads(EXAMPLE.read_text()))
    assert err.problem is SignatureProblem.MALFORMED and "not signed" in err.diagnostics
