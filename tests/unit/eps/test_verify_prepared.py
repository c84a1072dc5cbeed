"""Signature verification wired to the real fragments: what a prescriber signs after $prepare
verifies at $process-message, and any change to what was signed is caught.

The flow is the real one: prepare() the shared unsigned message, sign the digest's SignedInfo with
a TEST ONLY prescriber key (what a smartcard does), put the signature into a Provenance whose
``when`` is the timestamp $prepare returned, then verify the signed message.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest

from eps.verify import verify_bundle_signature
from eps.xmldsig import SignatureProblem, SignatureRejected
from tests.unit.eps.xmldsig_signer import SIGNED_AT, cert, key, prescriber, signed


def rejected(bundle: dict, now: datetime = SIGNED_AT + timedelta(minutes=5)) -> SignatureProblem:
    with pytest.raises(SignatureRejected) as caught:
        verify_bundle_signature(bundle, now=now)
    assert caught.value.status == 400
    return caught.value.problem


@pytest.mark.parametrize("algorithm", ["RS1", "RS256"])
def test_a_message_signed_after_prepare_verifies(algorithm):
    check = verify_bundle_signature(signed(algorithm), now=SIGNED_AT + timedelta(minutes=5))
    assert check.algorithm == algorithm and "TEST ONLY Prescriber" in check.signer


def test_the_author_time_comes_from_the_signature_so_verifying_later_still_matches():
    # verification runs long after signing: the fragments' time is signature.when, not the clock
    later = SIGNED_AT + timedelta(days=20)
    assert verify_bundle_signature(signed(), now=later).algorithm == "RS1"


def _medication_requests(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]


def test_a_tampered_line_item_is_refused():
    bundle = signed()
    quantity = _medication_requests(bundle)[0]["dispenseRequest"]["quantity"]
    quantity["value"] = quantity["value"] * 10
    assert rejected(bundle) is SignatureProblem.DIGEST_MISMATCH


def test_a_tampered_dosage_is_refused():
    bundle = signed()
    _medication_requests(bundle)[0]["dosageInstruction"][0]["text"] = "Take ten a day"
    assert rejected(bundle) is SignatureProblem.DIGEST_MISMATCH


def test_a_tampered_patient_is_refused():
    bundle = signed()
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["name"][0]["family"] = "Someone-Else"
    assert rejected(bundle) is SignatureProblem.DIGEST_MISMATCH


def test_a_moved_signing_time_is_refused():
    bundle = signed()
    bundle["entry"][-1]["resource"]["signature"][0]["when"] = "2025-06-01T10:30:00+00:00"
    assert rejected(bundle) is SignatureProblem.DIGEST_MISMATCH


def test_a_signature_by_another_key_than_the_certificate_is_refused():
    bundle = signed(
        signing_key=key("test-only-other-key.pem"), certificate=cert("test-only-prescriber-cert.pem")
    )
    assert rejected(bundle) is SignatureProblem.SIGNATURE_INVALID


def test_an_expired_certificate_is_refused():
    bundle = signed()
    expiry = prescriber()[1].not_valid_after_utc
    assert rejected(bundle, now=expiry + timedelta(days=1)) is SignatureProblem.CERTIFICATE_EXPIRED


def test_verifying_changes_nothing_in_the_message():
    bundle = signed()
    before = copy.deepcopy(bundle)
    verify_bundle_signature(bundle, now=SIGNED_AT)
    assert bundle == before
