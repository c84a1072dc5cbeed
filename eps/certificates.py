"""The prescriber's X.509 certificate: read it, check it is current, check who issued it.

Trust is configured as a folder of CA certificates (PEM or DER): the NHS smartcard sub-CAs, or
a test CA. Every certificate in the folder is an anchor, as EPS treats its configured sub-CA
list: a signing certificate is trusted when one of them issued it directly (issuer name matches
and the anchor's key verifies the certificate's signature) and that anchor is itself current.
A folder may therefore hold a root and its intermediates side by side.

Revocation (CRL/OCSP, which EPS also checks) is not done here: it needs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from eps.xmldsig import SIGNATURE_EXPRESSION, SignatureProblem, SignatureRejected, decode_base64

CERTIFICATE_SUFFIXES = (".pem", ".crt", ".cer", ".der")


def certificate_from_signature(
    texts: Sequence[str], expression: str = SIGNATURE_EXPRESSION
) -> x509.Certificate:
    """The one signing certificate in KeyInfo/X509Data, base64 DER as XML-DSig carries it."""
    unusable = SignatureProblem.CERTIFICATE_UNUSABLE
    if not texts or not "".join(texts).strip():
        raise SignatureRejected(unusable, "KeyInfo/X509Data/X509Certificate is missing or empty", expression)
    if len(texts) > 1:
        # which of several is the signer's would be a guess; EPS refuses this too
        raise SignatureRejected(unusable, f"expected one X509Certificate, found {len(texts)}", expression)
    if "-----BEGIN" in texts[0]:
        raise SignatureRejected(unusable, "X509Certificate must be base64 DER, not PEM", expression)
    der = decode_base64(texts[0], "X509Certificate", unusable, expression)
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        # cryptography parses these on first use: touch them now, so a certificate that cannot
        # give its names or dates is refused here and never raises from a later check
        _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SignatureRejected(unusable, f"X509Certificate cannot be parsed ({e})", expression) from e
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureRejected(
            unusable, "the certificate's key is not RSA, which rsa-sha* needs", expression
        )
    return cert


def check_current(cert: x509.Certificate, now: datetime, expression: str = SIGNATURE_EXPRESSION) -> None:
    """Refuse a certificate outside its validity period at ``now`` (an aware datetime)."""
    when = _aware(now)
    if when < cert.not_valid_before_utc:
        raise SignatureRejected(
            SignatureProblem.CERTIFICATE_NOT_YET_VALID,
            f"valid from {cert.not_valid_before_utc.isoformat()}, checked at {when.isoformat()}",
            expression,
        )
    if when > cert.not_valid_after_utc:
        raise SignatureRejected(
            SignatureProblem.CERTIFICATE_EXPIRED,
            f"valid until {cert.not_valid_after_utc.isoformat()}, checked at {when.isoformat()}",
            expression,
        )


def check_trusted(
    cert: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    now: datetime,
    expression: str = SIGNATURE_EXPRESSION,
) -> x509.Certificate:
    """The anchor that issued ``cert``; refuses when none did (an empty list trusts nothing)."""
    when = _aware(now)
    for anchor in anchors:
        try:
            if anchor.subject != cert.issuer or not _is_ca(anchor):
                continue
        except ValueError:
            continue  # an anchor whose name cannot be read issues nothing
        if not anchor.not_valid_before_utc <= when <= anchor.not_valid_after_utc:
            continue  # an expired CA vouches for nothing
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue  # same name, different key: a look-alike CA
        return anchor
    raise SignatureRejected(
        SignatureProblem.CERTIFICATE_UNTRUSTED,
        f"issuer {cert.issuer.rfc4514_string()!r} is not a configured trust anchor (or did not sign it)",
        expression,
    )


def load_trust_anchors(folder: str | Path) -> list[x509.Certificate]:
    """Every certificate in ``folder``'s PEM/DER files (``.pem .crt .cer .der``).

    A configuration error (no folder, an unreadable file, no certificate at all) raises
    ValueError naming the file: an operator should hear about it at start-up, and an empty trust
    list would refuse every prescription without saying why.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"trust anchor folder {root} does not exist")
    anchors: list[x509.Certificate] = []
    for path in sorted(root.iterdir()):
        if not path.is_file() or path.suffix.lower() not in CERTIFICATE_SUFFIXES:
            continue
        data = path.read_bytes()
        try:
            if b"-----BEGIN" in data:
                anchors.extend(x509.load_pem_x509_certificates(data))
            else:
                anchors.append(x509.load_der_x509_certificate(data))
        except ValueError as e:
            raise ValueError(f"trust anchor {path} is not a PEM or DER certificate: {e}") from e
    if not anchors:
        raise ValueError(
            f"trust anchor folder {root} holds no certificates ({', '.join(CERTIFICATE_SUFFIXES)})"
        )
    return anchors


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return True  # v1 CA certificates carry no extensions; the configured folder vouches for them
    except ValueError:
        return False


def _aware(now: datetime) -> datetime:
    # a naive datetime would be compared as if UTC by nobody in particular; say so explicitly
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
