"""A test-side XML-DSig signer: what a prescriber's smartcard does after $prepare.

Builds SignedInfo the way EPS's $prepare does (no whitespace, default xmldsig namespace), signs
its exclusive C14N with a TEST ONLY key, and wraps it in a Signature with the certificate.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

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
