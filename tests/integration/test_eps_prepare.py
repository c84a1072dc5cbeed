"""EPS $prepare through the real proxy: EPS's own example requests give EPS's own answers, per
client algorithm; bad input is a 400 OperationOutcome; only prescribers (and admins) may call;
the CapabilityStatement lists the operation; nothing reaches the store."""

from __future__ import annotations

import copy
import json
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


@pytest.mark.parametrize("pair", PAIRS, ids=list(PAIRS))
def test_eps_examples_give_eps_answers(stack, prescribers, pair):
    request_file, response_file, algorithm = PAIRS[pair]
    r = prepare(prescribers[algorithm], stack, (EXAMPLES / request_file).read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["resourceType"] == "Parameters"
    want = values(example(response_file))
    got = values(r.json())
    assert {k: got.get(k) for k in ("digest", "timestamp", "algorithm")} == want


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


def test_a_prescriber_can_do_nothing_else(stack, prescribers):
    r = prescribers[None].get(f"{stack.fhir}/MedicationRequest", timeout=30)
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
