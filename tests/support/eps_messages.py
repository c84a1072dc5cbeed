"""EPS prescription-order messages for the tests and the bench: the shared primary-care example,
given a fresh message id (and, when asked, a fresh prescription id with a valid check character)
and re-signed with the TEST ONLY prescriber key: the shared example's own signature is a
placeholder no certificate made, so a real one over its fragments replaces it."""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid
from decimal import Decimal
from pathlib import Path

from eps.prepare import fragments_to_hash
from tests.unit.eps.xmldsig_signer import TRUST, prescriber, signature_xml

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "examples" / "eps"
SEND = "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Process-Request-Send-200_OK.json"
INVALID_CHECKSUM = "errors__1-Process-Request-Send-400_INVALID_CHECKSUM.json"
PRESCRIBER_ODS = "A83008"  # the example's prescribing organisation
NOMINATED_ODS = "FA565"  # the example's nominated pharmacy
TRUST_DIR = TRUST
_MOD37 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+"


def example(name: str = SEND) -> dict:
    return json.loads((EXAMPLES / name).read_bytes(), parse_float=Decimal)


def short_form_id(prescriber_ods: str = PRESCRIBER_ODS) -> str:
    """A fresh short-form prescription id with a valid ISO 7064 MOD 37-2 check character."""
    head = "".join(random.choice("0123456789ABCDEF") for _ in range(6))
    tail = "".join(random.choice("0123456789ABCDEF") for _ in range(5))
    body = head + prescriber_ods.rjust(6, "0")[:6] + tail
    total = 0
    for char in body:
        total = ((total + int(char, 36)) * 2) % 37
    check = _MOD37[(1 - total) % 37]
    return f"{body[:6]}-{body[6:12]}-{body[12:]}{check}"


def signed(bundle: dict) -> dict:
    """``bundle`` with its prescriber signature (the requester's Provenance.signature) made anew
    over its own fragments with the TEST ONLY key."""
    key, cert = prescriber()
    fragments = fragments_to_hash(bundle)
    data = base64.b64encode(signature_xml(fragments, key, cert, "RS1")).decode()
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Provenance":
            for signature in entry["resource"].get("signature") or []:
                signature["data"] = data
    return bundle


def fresh(name: str = SEND, *, new_prescription: bool = True, sign: bool = True) -> dict:
    """The example with a new message id (Bundle.id) and, by default, a new prescription
    (short-form and long-form ids, line item ids), signed anew."""
    bundle = copy.deepcopy(example(name))
    bundle["id"] = str(uuid.uuid4())
    if new_prescription:
        short, long_form = short_form_id(), str(uuid.uuid4())
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "MedicationRequest":
                continue
            group = resource["groupIdentifier"]
            group["value"] = short
            group["extension"][0]["valueIdentifier"]["value"] = long_form
            for identifier in resource.get("identifier") or []:
                identifier["value"] = str(uuid.uuid4())
        bundle["identifier"]["value"] = str(uuid.uuid4())
    return signed(bundle) if sign else bundle


def short_id_of(bundle: dict) -> str:
    return next(
        e["resource"]["groupIdentifier"]["value"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
    )
