"""The delivery policy without a server: final answers, Retry-After, and per-partner slots."""

from types import SimpleNamespace

from forwarding.policy import (
    PermanentFailure,
    RetryableFailure,
    acquire_slot,
    backoff,
    release_slot,
    retry_after_of,
    stop_retrying_if_final,
)
from tests.support.fake_redis import FakeRedis


def job(retries_left=5, intervals=(1, 2, 4, 8, 16)):
    return SimpleNamespace(retries_left=retries_left, retry_intervals=list(intervals))


def test_a_final_answer_is_not_retried():
    j = job()
    stop_retrying_if_final(j, None, PermanentFailure, PermanentFailure("400: no"), None)
    assert j.retries_left == 0


def test_retry_after_stretches_the_next_wait_only():
    j = job(retries_left=4)  # one try made: the next wait is intervals[1]
    stop_retrying_if_final(j, None, RetryableFailure, RetryableFailure("429", retry_after=30), None)
    assert j.retry_intervals == [1, 30, 4, 8, 16] and j.retries_left == 4


def test_a_shorter_retry_after_never_shortens_the_backoff():
    j = job(retries_left=2)
    stop_retrying_if_final(j, None, RetryableFailure, RetryableFailure("503", retry_after=1), None)
    assert j.retry_intervals == [1, 2, 4, 8, 16]


def test_retry_after_is_read_in_seconds_and_a_date_is_ignored():
    assert retry_after_of(SimpleNamespace(headers={"Retry-After": "7"})) == 7.0
    assert retry_after_of(SimpleNamespace(headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})) is None
    assert retry_after_of(SimpleNamespace(headers={})) is None


def test_a_partner_gets_at_most_its_limit_of_deliveries_at_once():
    redis = FakeRedis()
    assert all(acquire_slot(redis, "FA1", limit=2) for _ in range(2))
    assert not acquire_slot(redis, "FA1", limit=2)
    assert acquire_slot(redis, "FB2", limit=2)  # another partner has its own slots
    release_slot(redis, "FA1")
    assert acquire_slot(redis, "FA1", limit=2)


def test_backoff_doubles_with_jitter_and_is_capped():
    waits = backoff(40)
    assert 1 <= waits[0] <= 2 and 3 <= waits[2] <= 5
    assert max(waits) <= 750 and waits[-1] >= 450
