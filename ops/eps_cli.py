"""``fhirplug eps``: EPS's prescription signing steps on a file, without a server.

    fhirplug eps prepare FILE [--algorithm RS1|RS256] [--digest-only]
    fhirplug eps verify FILE [--now 2024-12-09T12:00:00+00:00] [--trust-dir DIR]

``prepare`` prints the ``Parameters`` {digest, timestamp, algorithm} that ``POST [base]/$prepare``
would answer (or the digest alone); ``verify`` checks a signed prescription's signature: a FHIR
message (JSON, the signature in its Provenance) or a signed HL7 V3 prescription (``.xml``). Both
run the same domain code the proxy does (``eps.prepare``, ``eps.verify``).

Exit codes: 0 done; 1 the input was refused (the OperationOutcome's diagnostics and expressions on
stderr); 2 a usage problem (no such file, a part not in this build).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy import bodies
from proxy.errors import FhirError


def add_parser(sub) -> None:
    p = sub.add_parser("eps", help="EPS prescription signing: $prepare a message, verify a signature")
    es = p.add_subparsers(dest="action", required=True)
    prep = es.add_parser(
        "prepare",
        help="print the digest Parameters a prescriber signs for a prescription-order message",
        description="Run EPS $prepare on a prescription-order message Bundle (FHIR JSON). "
        "Exit 0: printed; 1: the message was refused; 2: usage problem.",
    )
    prep.add_argument("file", help="the unsigned prescription-order message Bundle (JSON)")
    prep.add_argument("--algorithm", choices=["RS256", "RS1"], default="RS256", help="default: RS256")
    prep.add_argument("--digest-only", action="store_true", help="print the base64 digest alone")
    ver = es.add_parser(
        "verify",
        help="check the signature of a signed prescription-order message",
        description="Verify a signed prescription message's signature against its own fragments. "
        "Exit 0: valid; 1: refused; 2: usage problem.",
    )
    ver.add_argument(
        "file",
        help="the signed prescription-order message Bundle (JSON), or a signed HL7 V3 prescription (.xml)",
    )
    ver.add_argument("--now", help="judge certificates as at this ISO 8601 instant (default: now)")
    ver.add_argument(
        "--trust-dir",
        help="a folder of CA certificates (PEM or DER): the signer's must be issued by one of them",
    )


def run(args) -> int:
    try:
        if args.action == "verify" and Path(args.file).suffix.lower() == ".xml":
            return _verify(None, args)
        bundle = _read(args.file)
        if args.action == "prepare":
            return _prepare(bundle, args)
        return _verify(bundle, args)
    except FhirError as err:
        _print_refusal(err)
        return 1
    except UsageError as exc:
        print(f"fhirplug: {exc}", file=sys.stderr)
        return 2


class UsageError(Exception):
    """Exit 2: the command cannot run as invoked."""


def _read(name: str) -> object:
    path = Path(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".xml":
        raise UsageError(f"{name}: FHIR XML is not read here; give the message as FHIR JSON")
    try:
        return bodies.parse_json(raw)  # the proxy's own limits and wording
    except FhirError as err:
        err.expression = err.expression or ["Bundle"]
        raise


def _prepare(bundle: object, args) -> int:
    from eps.prepare import HashAlgorithm, prepare

    prepared = prepare(bundle, HashAlgorithm(args.algorithm))
    if args.digest_only:
        print(prepared.digest)
    else:
        print(json.dumps(prepared.to_parameters(), indent=2))
    return 0


def _verify(bundle: object, args) -> int:
    """``bundle`` None: the file is a signed HL7 V3 prescription, read here."""
    from eps.certificates import load_trust_anchors
    from eps.v3_signed import verify_v3_prescription
    from eps.verify import verify_bundle_signature

    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    except ValueError as exc:
        raise UsageError(f"--now {args.now!r} is not an ISO 8601 instant") from exc
    if now.tzinfo is None:
        raise UsageError("--now needs a UTC offset (e.g. 2024-12-09T12:00:00+00:00)")
    try:
        anchors = load_trust_anchors(args.trust_dir) if args.trust_dir else None
    except ValueError as exc:
        raise UsageError(f"--trust-dir: {exc}") from exc
    if bundle is None:
        try:
            xml = Path(args.file).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        check = verify_v3_prescription(xml, now=now, trust_anchors=anchors)
    else:
        check = verify_bundle_signature(bundle, now=now, trust_anchors=anchors)
    print(f"valid {check.algorithm} signature by {check.signer}")
    valid = check.certificate
    print(f"certificate valid {valid.not_valid_before_utc:%Y-%m-%d} to {valid.not_valid_after_utc:%Y-%m-%d}")
    print(
        "trusted: issued by a certificate in --trust-dir"
        if check.trusted
        else "trust: not checked (no --trust-dir)"
    )
    return 0


def _print_refusal(err: FhirError) -> None:
    for issue in err.to_resource()["issue"]:
        where = ", ".join(issue.get("expression") or [])
        print(f"{issue['diagnostics']}" + (f" (at {where})" if where else ""), file=sys.stderr)
