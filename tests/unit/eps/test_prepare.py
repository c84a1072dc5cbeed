"""$prepare answers byte-for-byte what EPS answered for the shared example prescriptions."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from eps.prepare import HashAlgorithm, Prepared, fragments_to_hash, prepare

EXAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "examples" / "eps"
PRIMARY = "primary-care__acute__nominated-pharmacy__medical-prescriber__1"
SECONDARY = (
    "secondary-care__community__repeat-dispensing__nominated-pharmacy__clinical-practitioner__"
    "multiple-medication-requests__prescriber-endorsed__1"
)

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared examples not present")


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_bytes(), parse_float=Decimal)


def expected(name: str) -> dict[str, str]:
    return {p["name"]: p["valueString"] for p in load(name)["parameter"]}


@pytest.mark.parametrize("stem", [PRIMARY, SECONDARY])
def test_prepare_is_byte_identical_to_eps(stem):
    response = load(f"{stem}-Prepare-Response-200_OK.json")
    want = expected(f"{stem}-Prepare-Response-200_OK.json")
    got = prepare(
        load(f"{stem}-Prepare-Request-200_OK.json"),
        HashAlgorithm(want["algorithm"]),
        now=datetime.fromisoformat(want["timestamp"]),
    )
    assert got.digest == want["digest"]
    assert got.timestamp == want["timestamp"]
    assert got.algorithm is HashAlgorithm(want["algorithm"])
    assert got.to_parameters() == response


def test_raw_json_bytes_give_the_same_answer():
    raw = (EXAMPLES / f"{PRIMARY}-Prepare-Request-200_OK.json").read_bytes()
    now = datetime(2024, 12, 9, 11, 50, 4, tzinfo=UTC)
    assert prepare(raw, now=now) == prepare(json.loads(raw, parse_float=Decimal), now=now)


def test_the_spec_rs1_example_gives_eps_timestamp_algorithm_and_signed_info_shape():
    """EPS's spec eRD answer is a canned sandbox one: the same digest answers the different
    Multiple-Dosages prescription in EPS's examples, so no computation reproduces it. Its
    DigestValue (h0GfqGJ9…) is EPS's digest of another prescription: the 2022 version of
    ``secondary-care/community/acute/nominated-pharmacy/nurse/prescribing-and-professional-codes/
    1-Prepare-Request`` (EPS repo @5fd86d45b, 2022-08-23), which prepare() reproduces exactly
    (checked by hand against a fetched copy; that file cannot be committed here). What is real in
    this pair is checked: the timestamp format, the algorithm and the SignedInfo around it."""
    want = expected("spec__prepare__eRD-primary-example-res.json")
    got = prepare(
        load("spec__prepare__eRD-primary-example-req.json"),
        HashAlgorithm.RS1,
        now=datetime.fromisoformat(want["timestamp"]),
    )
    assert (got.timestamp, got.algorithm.value) == (want["timestamp"], want["algorithm"])
    ours, theirs = base64.b64decode(got.digest).decode(), base64.b64decode(want["digest"]).decode()
    assert ours.split("<DigestValue>")[0] == theirs.split("<DigestValue>")[0]
    assert len(ours) == len(theirs)  # a 20-byte SHA-1, base64, in the same envelope


def test_the_timestamp_is_the_requester_signature_time_when_the_message_is_signed():
    bundle = load(f"{PRIMARY}-Prepare-Request-200_OK.json")
    requester = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:28828c55-8fa7-42d7-916f-fcf076e0c10e",
            "resource": {
                "resourceType": "Provenance",
                "signature": [
                    {"when": "2024-12-09T12:50:04+01:00", "who": requester["requester"], "data": ""}
                ],
            },
        }
    )
    want = expected(f"{PRIMARY}-Prepare-Response-200_OK.json")
    got = prepare(bundle)  # no clock: the signature's time (an hour east of UTC) is used
    assert got.timestamp == "2024-12-09T11:50:04+00:00"
    assert got.digest == want["digest"]


def test_without_a_signature_the_author_time_is_now():
    before = datetime.now(UTC).replace(microsecond=0)
    got = prepare(load(f"{PRIMARY}-Prepare-Request-200_OK.json"))
    assert before <= datetime.fromisoformat(got.timestamp) <= datetime.now(UTC)


def test_fragments_to_hash_is_what_the_digest_covers():
    want = expected(f"{PRIMARY}-Prepare-Response-200_OK.json")
    now = datetime.fromisoformat(want["timestamp"])
    canonical = fragments_to_hash(load(f"{PRIMARY}-Prepare-Request-200_OK.json"), now=now)
    assert canonical.startswith(
        b'<FragmentsToBeHashed><Fragment><time xmlns="urn:hl7-org:v3" value="20241209115004">'
    )
    import hashlib

    digest_value = base64.b64encode(hashlib.sha256(canonical).digest()).decode()
    assert f"<DigestValue>{digest_value}</DigestValue>" in base64.b64decode(want["digest"]).decode()


def test_rs1_and_rs256_differ_only_in_methods_and_hash():
    bundle = load(f"{PRIMARY}-Prepare-Request-200_OK.json")
    now = datetime(2024, 1, 1, tzinfo=UTC)
    rs1, rs256 = prepare(bundle, HashAlgorithm.RS1, now=now), prepare(bundle, HashAlgorithm.RS256, now=now)
    assert "rsa-sha1" in base64.b64decode(rs1.digest).decode()
    assert "rsa-sha256" in base64.b64decode(rs256.digest).decode()
    assert rs1.to_parameters()["parameter"][2] == {"name": "algorithm", "valueString": "RS1"}


def test_prepared_is_frozen():
    prepared = Prepared("d", "t", HashAlgorithm.RS256)
    with pytest.raises(AttributeError):
        prepared.digest = "x"  # type: ignore[misc]
    assert [p["name"] for p in prepared.to_parameters()["parameter"]] == ["digest", "timestamp", "algorithm"]
