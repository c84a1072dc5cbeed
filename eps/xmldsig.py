"""XML-DSig, only as far as an EPS prescription signature uses it.

A prescriber's smartcard signs a ``SignedInfo`` holding one ``Reference`` whose ``DigestValue`` is
the hash of the prescription's canonical signature fragments (``FragmentsToBeHashed``). This
module reads such a ``<Signature>`` and refuses, with one distinct reason each, anything that
is not that shape: general XML-DSig (URI dereferencing, arbitrary transforms, other key types)
is attack surface we do not need, so it is not accepted at all.

Canonicalisation is libxml2's exclusive C14N through lxml; nothing here re-implements it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass
from enum import Enum

from lxml import etree

from proxy.errors import FhirError

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

# The two pairs EPS issues from $prepare, named as its ``algorithm`` parameter names them (RS1,
# RS256: eps.prepare.HashAlgorithm's values). SHA-1 stays because prescribing systems still sign
# with it and EPS accepts it; a SignatureMethod that disagrees with its DigestMethod is refused.
ALGORITHM_PAIRS: dict[tuple[str, str], str] = {
    (RSA_SHA1, SHA1): "RS1",
    (RSA_SHA256, SHA256): "RS256",
}

# Where the signature sits in a FHIR prescription message; V3 callers pass their own location.
SIGNATURE_EXPRESSION = "Provenance.signature.data"


class SignatureProblem(Enum):
    """Why a signature was refused: one reason per kind of failure, so callers and tests can tell
    a tampered prescription from a broken certificate without parsing prose."""

    MALFORMED = "the signature is not a well-formed XML-DSig Signature"
    UNSUPPORTED_ALGORITHM = "the signature uses an unsupported algorithm"
    DIGEST_MISMATCH = "the signature does not match the prescription"
    SIGNATURE_INVALID = "the signature value is invalid"
    CERTIFICATE_UNUSABLE = "the signing certificate is missing or cannot be read"
    CERTIFICATE_EXPIRED = "the signing certificate has expired"
    CERTIFICATE_NOT_YET_VALID = "the signing certificate is not yet valid"
    CERTIFICATE_UNTRUSTED = "the signing certificate is not trusted"


class SignatureRejected(FhirError):
    """A 400 OperationOutcome (it is a FhirError) that also says which check failed."""

    problem: SignatureProblem

    def __init__(self, problem: SignatureProblem, detail: str, expression: str = SIGNATURE_EXPRESSION):
        self.problem = problem
        super().__init__(400, f"{problem.value}: {detail}", expression=[expression], code="invalid")


@dataclass(frozen=True)
class ParsedSignature:
    """The parts of a ``<Signature>`` verification needs, already decoded."""

    signed_info: etree._Element  # still inside its Signature, so C14N sees the inherited namespace
    algorithm: str  # "RS1" or "RS256"
    digest_value: bytes
    signature_value: bytes
    certificates: list[str]  # the X509Certificate texts, as found (base64 DER, whitespace and all)


# No DTDs, no entities, no network: a signature has no use for any of them, and each is a way to
# make a parser fetch, expand or explode.
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def parse_xml(data: bytes, what: str, expression: str = SIGNATURE_EXPRESSION) -> etree._Element:
    """Parse untrusted XML bytes, refusing a DOCTYPE (internal entities are a denial of service)."""
    if not isinstance(data, bytes | bytearray):
        raise SignatureRejected(SignatureProblem.MALFORMED, f"{what} must be bytes", expression)
    try:
        tree = etree.fromstring(bytes(data), _PARSER).getroottree()
    except (etree.XMLSyntaxError, ValueError) as e:
        raise SignatureRejected(
            SignatureProblem.MALFORMED, f"{what} is not well-formed XML ({e})", expression
        ) from e
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise SignatureRejected(SignatureProblem.MALFORMED, f"{what} must not carry a DOCTYPE", expression)
    return tree.getroot()


def decode_base64(text: str | bytes, what: str, problem: SignatureProblem, expression: str) -> bytes:
    """Strict base64, after dropping the whitespace (and ``&#13;``) XML-DSig allows inside it."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    compact = b"".join(raw.split())
    if not _BASE64.fullmatch(compact) or len(compact) % 4:
        raise SignatureRejected(problem, f"{what} is not base64", expression)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureRejected(problem, f"{what} is not base64", expression) from e


def _ds(local: str) -> str:
    return f"{{{DSIG_NS}}}{local}"


def _only(parent: etree._Element, local: str, expression: str) -> etree._Element:
    found = parent.findall(_ds(local))
    if len(found) != 1:
        where = etree.QName(parent).localname
        raise SignatureRejected(
            SignatureProblem.MALFORMED,
            f"{where} must hold exactly one {local} (found {len(found)})",
            expression,
        )
    return found[0]


def _algorithm_of(el: etree._Element, expression: str) -> str:
    value = el.get("Algorithm")
    if not value:
        raise SignatureRejected(
            SignatureProblem.MALFORMED, f"{etree.QName(el).localname} has no Algorithm", expression
        )
    return value


def parse_signature(signature: etree._Element, expression: str = SIGNATURE_EXPRESSION) -> ParsedSignature:
    """Read a ``<ds:Signature>`` element: its structure, then its algorithms, then its values."""
    if signature.tag != _ds("Signature"):
        raise SignatureRejected(
            SignatureProblem.MALFORMED, f"the root element must be {{{DSIG_NS}}}Signature", expression
        )
    signed_info = _only(signature, "SignedInfo", expression)
    c14n_method = _algorithm_of(_only(signed_info, "CanonicalizationMethod", expression), expression)
    sig_method = _algorithm_of(_only(signed_info, "SignatureMethod", expression), expression)
    reference = _only(signed_info, "Reference", expression)
    if reference.get("URI"):
        # EPS's Reference points at nothing: the fragments are rebuilt from the prescription
        # itself, so a URI (which a general verifier would dereference) has no place here.
        raise SignatureRejected(SignatureProblem.MALFORMED, "Reference must not carry a URI", expression)
    digest_method = _algorithm_of(_only(reference, "DigestMethod", expression), expression)
    transforms = reference.findall(f"{_ds('Transforms')}/{_ds('Transform')}")

    if c14n_method != EXC_C14N:
        raise SignatureRejected(
            SignatureProblem.UNSUPPORTED_ALGORITHM, f"CanonicalizationMethod {c14n_method!r}", expression
        )
    for transform in transforms:
        if _algorithm_of(transform, expression) != EXC_C14N:
            raise SignatureRejected(
                SignatureProblem.UNSUPPORTED_ALGORITHM,
                f"Transform {transform.get('Algorithm')!r}",
                expression,
            )
    algorithm = ALGORITHM_PAIRS.get((sig_method, digest_method))
    if algorithm is None:
        raise SignatureRejected(
            SignatureProblem.UNSUPPORTED_ALGORITHM,
            f"SignatureMethod {sig_method!r} with DigestMethod {digest_method!r}",
            expression,
        )

    digest_value = decode_base64(
        _only(reference, "DigestValue", expression).text or "",
        "DigestValue",
        SignatureProblem.MALFORMED,
        expression,
    )
    if not digest_value:
        raise SignatureRejected(SignatureProblem.MALFORMED, "DigestValue is empty", expression)
    signature_value = decode_base64(
        _only(signature, "SignatureValue", expression).text or "",
        "SignatureValue",
        SignatureProblem.MALFORMED,
        expression,
    )
    if not signature_value:
        # what $prepare's callers send before the smartcard has signed (EPS's own example does)
        raise SignatureRejected(SignatureProblem.MALFORMED, "SignatureValue is empty: not signed", expression)
    certificates = [
        el.text or ""
        for el in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    ]
    return ParsedSignature(signed_info, algorithm, digest_value, signature_value, certificates)


def canonical(element: etree._Element) -> bytes:
    """Exclusive C14N (without comments) of one element, in the context of its document."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False, with_tail=False)


def signed_info_forms(signed_info: etree._Element) -> list[bytes]:
    """The canonical bytes the signer may have signed: SignedInfo exactly as it sits first.

    The second form drops whitespace-only text nodes, which is what EPS itself signs and checks
    (its XML model keeps no whitespace between elements); it matters when a signed message has
    been pretty-printed after signing, as EPS's own signed test prescriptions have been. Whitespace
    between SignedInfo's elements carries nothing we read (algorithms come from attributes, the
    digest from DigestValue's stripped text), so accepting it changes nothing a signer vouched for.
    """
    as_is = canonical(signed_info)
    stripped = copy.deepcopy(signed_info)
    for el in stripped.iter():
        if el.text is not None and not el.text.strip():
            el.text = None
        if el is not stripped and el.tail is not None and not el.tail.strip():
            el.tail = None
    compact = canonical(stripped)
    return [as_is] if compact == as_is else [as_is, compact]
