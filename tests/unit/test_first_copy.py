"""Waiting on the first copy of a repeated request (proxy/first_copy.py), with a stand-in Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
from redis.exceptions import RedisError

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
    assert refused.value.status == 503 and "failed; send it again" in str(refused.value)
    assert refused.value.headers["Retry-After"] == "1" and refused.value.code == "transient"


def test_a_first_copy_still_under_way_after_the_wait_is_a_503_with_retry_after_never_a_409():
    redis = FakeRedis()
    redis.set("k", b'{"state":"pending"}')
    with pytest.raises(FhirError) as refused:
        first_copy.first_result(redis, "k", "message", 0.1)
    # a 409 reads as final to many clients: the message would be given up
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "2"


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


class Flaky(FakeRedis):
    """Redis that refuses deletes while ``down``."""

    down = True

    def delete(self, key):
        if self.down:
            raise RedisError("gone")
        return super().delete(key)


def test_a_claim_that_could_not_be_released_is_released_once_redis_answers(monkeypatch):
    monkeypatch.setattr(first_copy, "RELEASE_EVERY_S", 0.05)
    redis = Flaky()
    redis.set("k", b'{"state":"pending"}')
    first_copy.owe_release(redis, "k")
    time.sleep(0.2)
    assert redis.get("k") is not None  # Redis still away: still owed
    redis.down = False
    deadline = time.monotonic() + 2
    while redis.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis.get("k") is None
    assert not first_copy._owed


def test_an_owed_release_leaves_a_finished_record_alone():
    redis = FakeRedis()
    redis.set("k", json.dumps({"state": "done", "status": 201}))
    first_copy._owed.add("k")
    first_copy.settle_releases(redis)
    assert json.loads(redis.get("k"))["state"] == "done" and not first_copy._owed
