"""A test-side XML-DSig signer: what a prescriber's smartcard does after $prepare.

Builds SignedInfo the way EPS's $prepare does (no whitespace, default xmldsig namespace), signs
its exclusive C14N with a TEST ONLY key, and wraps it in a Signature with the certificate.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from eps.prepare import HashAlgorithm, fragments_to_hash, prepare
from eps.xmldsig import DSIG_NS, EXC_C14N, RSA_SHA1, RSA_SHA256, SHA1, SHA256

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eps"
TRUST = FIXTURES / "trust"

_METHODS = {
    "RS1": (RSA_SHA1, SHA1, hashlib.sha1, hashes.SHA1),
    "RS256": (RSA_SHA256, SHA256, hashlib.sha256, hashes.SHA256),
}


def key(name: str) -> rsa.RSAPrivateKey:
    loaded = serialization.load_pem_private_key((FIXTURES / name).read_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def cert(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((FIXTURES / name).read_bytes())


def prescriber() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return key("test-only-prescriber-key.pem"), cert("test-only-prescriber-cert.pem")


def signature_xml(
    fragments_c14n: bytes,
    signing_key: rsa.RSAPrivateKey,
    certificate: x509.Certificate | None,
    algorithm: str = "RS1",
    *,
    signature_method: str | None = None,
    digest_method: str | None = None,
    digest: bytes | None = None,
) -> bytes:
    """A ``<Signature>`` over ``fragments_c14n``; the keyword overrides build broken ones."""
    sig_uri, digest_uri, digest_fn, hash_cls = _METHODS[algorithm]
    ds = f"{{{DSIG_NS}}}"
    signature = etree.Element(ds + "Signature", nsmap={None: DSIG_NS})
    signed_info = etree.SubElement(signature, ds + "SignedInfo")
    etree.SubElement(signed_info, ds + "CanonicalizationMethod", Algorithm=EXC_C14N)
    etree.SubElement(signed_info, ds + "SignatureMethod", Algorithm=signature_method or sig_uri)
    reference = etree.SubElement(signed_info, ds + "Reference")
    transforms = etree.SubElement(reference, ds + "Transforms")
    etree.SubElement(transforms, ds + "Transform", Algorithm=EXC_C14N)
    etree.SubElement(reference, ds + "DigestMethod", Algorithm=digest_method or digest_uri)
    value = digest if digest is not None else digest_fn(fragments_c14n).digest()
    etree.SubElement(reference, ds + "DigestValue").text = base64.b64encode(value).decode()
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    signed = signing_key.sign(canonical, padding.PKCS1v15(), hash_cls())
    etree.SubElement(signature, ds + "SignatureValue").text = base64.b64encode(signed).decode()
    key_info = etree.SubElement(signature, ds + "KeyInfo")
    x509_data = etree.SubElement(key_info, ds + "X509Data")
    if certificate is not None:
        der = certificate.public_bytes(serialization.Encoding.DER)
        etree.SubElement(x509_data, ds + "X509Certificate").text = base64.b64encode(der).decode()
    return etree.tostring(signature)


# -- a whole signed FHIR message: the shared unsigned prescription, $prepared and signed

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
REQUEST = "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Request-200_OK.json"
SIGNED_AT = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)


def unsigned() -> dict:
    return json.loads((EXAMPLES / REQUEST).read_bytes(), parse_float=Decimal)


def requester_of(bundle: dict) -> dict:
    first = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    return first["requester"]


def digest_value(xml: bytes) -> str:
    return etree.fromstring(xml).findtext(f".//{{{DSIG_NS}}}DigestValue")


def signed(algorithm: str = "RS1", signing_key=None, certificate=None) -> dict:
    """The message as a prescribing system sends it after $prepare and the smartcard."""
    bundle = unsigned()
    prepared = prepare(bundle, HashAlgorithm(algorithm), now=SIGNED_AT)
    default_key, default_cert = prescriber()
    # sign the very fragments $prepare digested: the digest in its SignedInfo is of these bytes
    fragments = fragments_to_hash(bundle, now=SIGNED_AT)
    signature = signature_xml(fragments, signing_key or default_key, certificate or default_cert, algorithm)
    # the DigestValue the prescriber's card signs is the one $prepare handed out
    assert digest_value(base64.b64decode(prepared.digest)) == digest_value(signature)
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:0d5a1b9c-6f3e-4c57-9c1f-5e2b7d1f0a11",
            "resource": {
                "resourceType": "Provenance",
                "target": [
                    {"reference": e["fullUrl"]}
                    for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "MedicationRequest"
                ],
                "recorded": prepared.timestamp,
                "agent": [{"who": requester_of(bundle)}],
                "signature": [
                    {
                        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
                        "when": prepared.timestamp,
                        "who": requester_of(bundle),
                        "data": base64.b64encode(signature).decode(),
                    }
                ],
            },
        }
    )
    return bundle
