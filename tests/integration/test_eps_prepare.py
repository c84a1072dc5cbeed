"""EPS $prepare through the real proxy: EPS's own example requests give EPS's own answers (pinned
to EPS's instant by a requester signature), per client algorithm; bad input is a 400
OperationOutcome; only prescribers (and admins) may call; the CapabilityStatement lists the
operation; nothing reaches the store."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from redis import Redis

from proxy.auth.registry import ClientRegistry
from proxy.store_caller import store_auth

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT.parent / "shared" / "examples" / "eps"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
PAIRS = {
    # (request, expected response, the client's registered algorithm)
    "spec eRD example, RS1": (
        "spec__prepare__eRD-primary-example-req.json",
        "spec__prepare__eRD-primary-example-res.json",
        "RS1",
    ),
    "primary-care acute, RS256 by default": (
        "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Request-200_OK.json",
        "primary-care__acute__nominated-pharmacy__medical-prescriber__1-Prepare-Response-200_OK.json",
        None,
    ),
}


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def values(parameters: dict) -> dict[str, str]:
    return {p["name"]: p["valueString"] for p in parameters["parameter"]}


@pytest.fixture(scope="module")
def prescribers(stack) -> dict[str | None, requests.Session]:
    """A prescribing system registered as EPS would have it: one left at the default, one for RS1."""
    rs256 = stack.client("eps-prescriber", "prescriber", "A83008")
    rs1 = stack.client("eps-prescriber-rs1", "prescriber", "A83008")
    registry = ClientRegistry(Redis.from_url(stack.redis_url))
    record = registry.get(rs1.client_id)
    record.eps_signing_algorithm = "RS1"
    registry.put(record)
    sessions = {None: stack.session(client=rs256), "RS1": stack.session(client=rs1)}
    yield sessions
    for s in sessions.values():
        s.close()


def prepare(session: requests.Session, stack, body: bytes | dict) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return session.post(f"{stack.fhir}/$prepare", data=data, headers=FHIR_JSON, timeout=30)


def signed_at(bundle: dict, when: str) -> dict:
    """The message with a requester signature made at ``when``: EPS takes an unsigned message's
    author time from the clock, and a signed one's from its signature, so this is how a request
    through a live proxy reproduces an answer EPS gave at a past instant."""
    bundle = copy.deepcopy(bundle)
    requester = next(
        e["resource"]["requester"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "MedicationRequest"
    )
    provenance = {"resourceType": "Provenance", "signature": [{"when": when, "who": requester, "data": ""}]}
    bundle["entry"].append(
        {"fullUrl": "urn:uuid:28828c55-8fa7-42d7-916f-fcf076e0c10e", "resource": provenance}
    )
    return bundle


def test_the_primary_care_example_gives_epss_answer_byte_for_byte(stack, prescribers):
    request_file, response_file, algorithm = PAIRS["primary-care acute, RS256 by default"]
    want = values(example(response_file))
    r = prepare(prescribers[algorithm], stack, signed_at(example(request_file), want["timestamp"]))
    assert r.status_code == 200, r.text
    assert r.json() == example(response_file)


def test_the_spec_example_gives_what_is_real_in_epss_canned_answer(stack, prescribers):
    """EPS's spec eRD answer is a canned sandbox one (its digest also answers a different
    prescription in EPS's examples; see tests/unit/eps), so no computation reproduces its
    DigestValue: the timestamp, the algorithm and the RS1 SignedInfo around the digest are EPS's."""
    request_file, response_file, algorithm = PAIRS["spec eRD example, RS1"]
    want = values(example(response_file))
    r = prepare(prescribers[algorithm], stack, signed_at(example(request_file), want["timestamp"]))
    assert r.status_code == 200, r.text
    got = values(r.json())
    assert (got["timestamp"], got["algorithm"]) == (want["timestamp"], want["algorithm"])
    ours, theirs = (base64.b64decode(v["digest"]).decode() for v in (got, want))
    assert ours.split("<DigestValue>")[0] == theirs.split("<DigestValue>")[0]
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_an_unsigned_message_is_prepared_now_exactly_as_the_domain_computes(stack, prescribers, pair):
    from eps.prepare import HashAlgorithm
    from eps.prepare import prepare as domain_prepare

    request_file, _, algorithm = PAIRS[pair]
    before = datetime.now(UTC).replace(microsecond=0)
    r = prepare(prescribers[algorithm], stack, (EXAMPLES / request_file).read_bytes())
    after = datetime.now(UTC)
    assert r.status_code == 200, r.text
    got = values(r.json())
    at = datetime.fromisoformat(got["timestamp"])
    assert before <= at <= after
    bundle = json.loads((EXAMPLES / request_file).read_bytes(), parse_float=Decimal)
    again = domain_prepare(bundle, HashAlgorithm(algorithm or "RS256"), now=at)
    assert r.json() == again.to_parameters()


@pytest.mark.parametrize("algorithm", [None, "RS1"])
def test_the_answer_is_in_the_clients_registered_algorithm(stack, prescribers, algorithm):
    r = prepare(prescribers[algorithm], stack, example(PAIRS["spec eRD example, RS1"][0]))
    assert r.status_code == 200, r.text
    assert values(r.json())["algorithm"] == (algorithm or "RS256")


def wrong_event() -> dict:
    bundle = copy.deepcopy(example(PAIRS["spec eRD example, RS1"][0]))
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "prescription-order-update"
    return bundle


BAD = {
    "not a Bundle": {"resourceType": "Patient", "id": "x"},
    "wrong event code": wrong_event(),
    "malformed JSON": b'{"resourceType": "Bundle", "type": "message", "entry": [',
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_400_operation_outcome_naming_the_element(stack, prescribers, case):
    r = prepare(prescribers[None], stack, BAD[case])
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"], outcome


def test_without_a_token_it_is_401(stack, anon):
    r = anon.post(f"{stack.fhir}/$prepare", data=b"{}", headers=FHIR_JSON, timeout=30)
    assert r.status_code == 401 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("role", "ods"), [("spoke", "FS1A1"), ("reader", "")])
def test_roles_that_do_not_prescribe_are_403(stack, role, ods):
    with stack.session(client=stack.client(f"eps-not-a-prescriber-{role}", role, ods)) as s:
        r = prepare(s, stack, example(PAIRS["spec eRD example, RS1"][0]))
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"


def test_a_prescriber_changes_nothing_through_plain_rest(stack, prescribers):
    # since prescribers became tenants they read and search their own (rs); writes go through
    # EPS's operations only
    body = {"resourceType": "MedicationRequest", "status": "active", "intent": "order"}
    r = prescribers[None].post(f"{stack.fhir}/MedicationRequest", json=body, headers=FHIR_JSON, timeout=30)
    assert r.status_code == 403


def test_get_is_405(stack, prescribers):
    r = prescribers[None].get(f"{stack.fhir}/$prepare", timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert r.json()["resourceType"] == "OperationOutcome"


def test_metadata_lists_prepare(stack, anon):
    cs = anon.get(f"{stack.fhir}/metadata", timeout=60).json()
    assert {
        "name": "prepare",
        "definition": "https://fhir.nhs.uk/OperationDefinition/MessageHeader-prepare-message",
    } in cs["rest"][0]["operation"]


def test_nothing_is_stored(stack, prescribers):
    def count(rtype: str) -> int:
        r = requests.get(f"{stack.store_url}/{rtype}", params={"_summary": "count"}, auth=store_auth())
        return r.json()["total"]

    before = {t: count(t) for t in ("MedicationRequest", "Patient", "Bundle")}
    assert prepare(prescribers[None], stack, example(PAIRS["spec eRD example, RS1"][0])).status_code == 200
    assert {t: count(t) for t in before} == before
