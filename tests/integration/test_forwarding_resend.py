"""A spoke's resend after a crash (issue 22), through the real proxy, store and Redis: the claim
the first copy left pending in Redis never turns into a 409 the client would take as final; it
is answered from the store at once when the first copy was stored, else 503 with Retry-After
until the claim is settled, and then accepted, once."""

from __future__ import annotations

import json
import time

import pytest
from redis import Redis

from hubspoke.messages import digest
from plugins.intake import message_key
from tests.support.messages import FHIR_JSON, RFC4122, Case

pytestmark = pytest.mark.integration
SPOKE = "VNE51"


@pytest.fixture(scope="module")
def spoke(stack):
    return stack.session(client=stack.client("resend-spoke", "spoke", SPOKE))


def tasks(http, stack, case: Case) -> int:
    query = {"identifier": f"{RFC4122}|{case.task_identifier}"}
    return http.get(f"{stack.fhir}/Task", params=query).json()["total"]


def test_a_resend_whose_first_copy_was_stored_is_answered_201_at_once(stack, spoke, http):
    """Redis came back from an append-only file written while the first copy was in flight:
    its claim says pending, although the message is in the store."""
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    assert spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON).status_code == 201
    redis = Redis.from_url(stack.redis_url)
    key = message_key("resend-spoke", bundle["identifier"])
    redis.set(key, json.dumps({"state": "pending", "digest": digest(bundle)}), ex=120)
    t0 = time.monotonic()
    again = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert again.status_code == 201, again.text
    assert time.monotonic() - t0 < 10  # not held for the claim's 120 s, nor for the 30 s wait
    assert tasks(http, stack, case) == 1


def test_a_resend_while_a_dead_first_copy_holds_the_claim_is_told_503_then_accepted_once(stack, spoke, http):
    """The first copy's proxy died before storing anything; its claim lapses (here after 20 s of
    its 120). A client that resends on each 503 after Retry-After gets its message in, once."""
    case = Case()
    bundle = case.load("valid-spoke-to-hub.json")
    redis = Redis.from_url(stack.redis_url)
    key = message_key("resend-spoke", bundle["identifier"])
    redis.set(key, json.dumps({"state": "pending", "digest": digest(bundle)}), ex=20)
    t0, answers = time.monotonic(), []
    while time.monotonic() - t0 < 120:
        r = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
        answers.append(r.status_code)
        if r.status_code != 503:
            break
        assert r.headers.get("Retry-After"), r.headers  # what the client is told to do
        assert r.json()["issue"][0]["code"] == "transient"
        time.sleep(float(r.headers["Retry-After"]))
    assert answers[-1] == 201, answers
    assert set(answers[:-1]) <= {503}, answers  # never a 409
    assert time.monotonic() - t0 < 20 + 30 + 10  # the claim's life, one wait, a retry
    assert tasks(http, stack, case) == 1
