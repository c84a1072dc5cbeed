"""Check a prescriber's XML-DSig signature against the prescription it claims to sign.

``verify_signature`` is the core and takes the prescription's canonical FragmentsToBeHashed as
bytes, so it does not care where they came from: a FHIR message (``verify_bundle_signature``,
through ``eps.prepare.fragments_to_hash``) or a signed HL7 V3 ParentPrescription
(``eps.v3_signed``). Checks run in a fixed order and the first failure is the answer, each with
its own ``SignatureProblem``: shape, algorithms, digest (was the prescription changed?),
certificate, signature value (did this certificate's key sign it?), validity period, trust.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from eps.certificates import certificate_from_signature, check_current, check_trusted
from eps.xmldsig import (
    SIGNATURE_EXPRESSION,
    SignatureProblem,
    SignatureRejected,
    decode_base64,
    parse_signature,
    parse_xml,
    signed_info_forms,
)

_DIGESTS: dict[str, Callable[[bytes], Any]] = {"RS1": hashlib.sha1, "RS256": hashlib.sha256}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"RS1": hashes.SHA1, "RS256": hashes.SHA256}

FragmentsFn = Callable[[object], bytes]


@dataclass(frozen=True)
class SignatureCheck:
    """A signature that passed: what was checked, and who signed."""

    algorithm: str  # "RS1" or "RS256", the values of eps.prepare.HashAlgorithm
    digest: bytes  # the fragments' digest the signer vouched for
    certificate: x509.Certificate
    trusted: bool  # True when trust anchors were configured and one issued the certificate

    @property
    def signer(self) -> str:
        return self.certificate.subject.rfc4514_string()


def verify_signature(
    signature_xml: bytes,
    fragments_c14n: bytes,
    *,
    now: datetime,
    trust_anchors: Sequence[x509.Certificate] | None = None,
    expression: str = SIGNATURE_EXPRESSION,
) -> SignatureCheck:
    """Verify an XML-DSig ``<Signature>`` over ``fragments_c14n`` (already canonical bytes).

    ``now`` is the instant the certificate must be valid at (EPS checks the signing time; pass
    that if it is the policy). ``trust_anchors=None`` skips the chain check; a list (even an
    empty one) is enforced. Raises ``SignatureRejected`` (a 400 ``FhirError``) on any failure.
    """
    parsed = parse_signature(parse_xml(signature_xml, "the signature", expression), expression)

    digest = _DIGESTS[parsed.algorithm](fragments_c14n).digest()
    if not hmac.compare_digest(digest, parsed.digest_value):
        raise SignatureRejected(
            SignatureProblem.DIGEST_MISMATCH,
            "the prescription's digest differs from the DigestValue the prescriber signed",
            expression,
        )

    cert = certificate_from_signature(parsed.certificates, expression)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)  # certificate_from_signature refuses any other
    if not any(
        _rsa_verifies(key, parsed.signature_value, form, parsed.algorithm)
        for form in signed_info_forms(parsed.signed_info)
    ):
        raise SignatureRejected(
            SignatureProblem.SIGNATURE_INVALID,
            f"SignatureValue was not made over SignedInfo by the key of {cert.subject.rfc4514_string()!r}",
            expression,
        )

    check_current(cert, now, expression)
    if trust_anchors is not None:
        check_trusted(cert, trust_anchors, now, expression)
    return SignatureCheck(parsed.algorithm, digest, cert, trusted=trust_anchors is not None)


def _rsa_verifies(key: rsa.RSAPublicKey, signature: bytes, data: bytes, algorithm: str) -> bool:
    try:
        key.verify(signature, data, padding.PKCS1v15(), _HASHES[algorithm]())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the FHIR message adapter ---------------------------------------------------------------


def _eps_core_fragments(bundle: object) -> bytes:
    # imported at call time: eps.prepare is another branch's work, and the verifier must load
    # (and be testable) without it
    from eps.prepare import fragments_to_hash

    return fragments_to_hash(bundle)


def verify_bundle_signature(
    bundle: object,
    *,
    now: datetime,
    trust_anchors: Sequence[x509.Certificate] | None = None,
    fragments: FragmentsFn = _eps_core_fragments,
) -> SignatureCheck:
    """Verify the prescriber's signature on a FHIR prescription-order message.

    The signature is the one EPS takes: a Provenance.signature whose ``who`` is the first
    MedicationRequest's requester (when no signature names the requester, the one Provenance
    whose targets include a MedicationRequest of the message). ``fragments`` is computed from the
    whole message, as EPS does at $process-message: of the Provenance it reads only
    ``signature.when``, which is the prescription's author time (the ``timestamp`` $prepare
    returned), so what was signed is rebuilt exactly; the signature data itself feeds nothing.
    """
    data = _signature_data(bundle)
    signature_xml = decode_base64(
        data, "signature.data", SignatureProblem.MALFORMED, "Provenance.signature.data"
    )
    fragments_c14n = fragments(bundle)
    if not isinstance(fragments_c14n, bytes):
        raise TypeError(f"fragments() must return bytes, not {type(fragments_c14n).__name__}")
    return verify_signature(signature_xml, fragments_c14n, now=now, trust_anchors=trust_anchors)


def _resources(bundle: object) -> list[dict]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise SignatureRejected(SignatureProblem.MALFORMED, "the message is not a Bundle", "Bundle")
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        raise SignatureRejected(SignatureProblem.MALFORMED, "the message has no entries", "Bundle.entry")
    return [e["resource"] for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def _full_urls_of(bundle: dict, resource_type: str) -> set[str]:
    urls: set[str] = set()
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
            if isinstance(entry.get("fullUrl"), str):
                urls.add(entry["fullUrl"])
            if isinstance(resource.get("id"), str):
                urls.add(f"{resource_type}/{resource['id']}")
    return urls


def _list(resource: dict, key: str) -> list:
    value = resource.get(key)
    return value if isinstance(value, list) else []


def _reference(value: object) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def _signature_data(bundle: object) -> str:
    resources = _resources(bundle)
    assert isinstance(bundle, dict)
    provenances = [r for r in resources if r.get("resourceType") == "Provenance"]
    if not provenances:
        raise SignatureRejected(
            SignatureProblem.MALFORMED,
            "the message has no Provenance carrying the prescriber's signature",
            "Provenance",
        )
    signatures = [(p, s) for p in provenances for s in _list(p, "signature") if isinstance(s, dict)]
    requests = [r for r in resources if r.get("resourceType") == "MedicationRequest"]
    requester = _reference(requests[0].get("requester")) if requests else None
    chosen = [s for _, s in signatures if requester and _reference(s.get("who")) == requester]
    if not chosen:
        prescription = _full_urls_of(bundle, "MedicationRequest")
        covering = [
            s for p, s in signatures if any(_reference(t) in prescription for t in _list(p, "target"))
        ]
        chosen = covering
    if not chosen:
        raise SignatureRejected(
            SignatureProblem.MALFORMED,
            "no Provenance.signature by the prescription's requester or covering its MedicationRequests",
            "Provenance.signature",
        )
    if len(chosen) > 1:
        raise SignatureRejected(
            SignatureProblem.MALFORMED,
            f"expected one prescriber signature, found {len(chosen)}",
            "Provenance.signature",
        )
    data = chosen[0].get("data")
    if not isinstance(data, str) or not data.strip():
        raise SignatureRejected(
            SignatureProblem.MALFORMED, "signature.data is missing", "Provenance.signature.data"
        )
    return data
