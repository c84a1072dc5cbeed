"""Waiting on the first copy of a repeated request (proxy/first_copy.py), with a stand-in Redis."""

from __future__ import annotations

import json
import threading

import pytest

from proxy import first_copy
from proxy.errors import FhirError
from tests.support.fake_redis import FakeRedis


def test_a_done_record_is_the_answer():
    redis = FakeRedis()
    redis.set("k", json.dumps({"state": "done", "status": 201}))
    assert first_copy.first_result(redis, "k", "message", 1)["status"] == 201


def test_a_later_copy_waits_until_the_first_is_done():
    redis = FakeRedis()
    redis.set("k", b'{"state":"pending"}')
    done = threading.Timer(0.2, lambda: redis.set("k", json.dumps({"state": "done", "status": 200})))
    done.start()
    assert first_copy.first_result(redis, "k", "delivery", 5)["status"] == 200


def test_a_first_copy_that_failed_lets_the_next_be_sent_again():
    with pytest.raises(FhirError) as refused:
        first_copy.first_result(FakeRedis(), "k", "delivery", 1)
    assert refused.value.status == 409 and "failed; send it again" in str(refused.value)


def test_a_first_copy_still_under_way_after_the_wait_is_a_409_with_retry_after():
    redis = FakeRedis()
    redis.set("k", b'{"state":"pending"}')
    with pytest.raises(FhirError) as refused:
        first_copy.first_result(redis, "k", "message", 0.1)
    assert refused.value.status == 409 and refused.value.headers["Retry-After"] == "2"


def test_the_check_refuses_a_copy_that_differs():
    redis = FakeRedis()
    redis.set("k", json.dumps({"state": "done", "digest": "a"}))

    def same(record):
        if record["digest"] != "b":
            raise FhirError(409, "other content")

    with pytest.raises(FhirError, match="other content"):
        first_copy.first_result(redis, "k", "message", 1, same)


def test_redis_failing_while_a_later_copy_waits_is_a_503_not_a_500():
    class Down(FakeRedis):
        def get(self, key):
            from redis.exceptions import ConnectionError

            raise ConnectionError("gone")

    with pytest.raises(FhirError) as raised:
        first_copy.first_result(Down(), "k", "message", 1)
    assert raised.value.status == 503 and raised.value.headers.get("Retry-After")
