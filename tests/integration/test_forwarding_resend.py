"""A spoke's resend after a crash (issue 22), through the real proxy, store and Redis: a claim the
first copy left pending in Redis does not hold the resend when the store shows the message was
stored: it is answered 201 at once, and nothing is stored twice. (The 503 + Retry-After answer
while a first copy is unsettled, and the release of a claim a failed copy could not delete, are
unit-tested: tests/unit/test_first_copy.py, tests/unit/plugins/test_intake.py.)"""

from __future__ import annotations

import json
import time

import pytest
from redis import Redis

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
    sent_as = json.loads(redis.get(key))["digest"]  # the first copy's, as the proxy computed it
    redis.set(key, json.dumps({"state": "pending", "digest": sent_as}), ex=120)
    t0 = time.monotonic()
    again = spoke.post(stack.fhir, json=bundle, headers=FHIR_JSON)
    assert again.status_code == 201, again.text
    assert time.monotonic() - t0 < 10  # not held for the claim's 120 s, nor for the 30 s wait
    assert tasks(http, stack, case) == 1
