"""The delivery policy without a server: final answers, Retry-After, and per-partner slots."""

import time
from types import SimpleNamespace

from forwarding.policy import (
    LEASE_TTL_S,
    PartnerBusy,
    PermanentFailure,
    RetryableFailure,
    acquire_slot,
    backoff,
    holding,
    release_slot,
    retry_after_of,
    stop_retrying_if_final,
    wait_for_slot,
    wait_until_due,
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
    # 30 s and one more: RQ rounds a due time down to the second, the job waits out the rest
    assert j.retry_intervals == [1, 31, 4, 8, 16] and j.retries_left == 4


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
    leases = [acquire_slot(redis, "FA1", 2, f"d{n}") for n in range(2)]
    assert all(leases) and len(set(leases)) == 2
    assert acquire_slot(redis, "FA1", 2, "d3") is None
    assert acquire_slot(redis, "FB2", 2, "d3")  # another partner has its own slots
    release_slot(redis, leases[0], "d0")
    assert acquire_slot(redis, "FA1", 2, "d3") == leases[0]


def test_a_dead_holders_lease_frees_itself_and_is_never_taken_back_from_a_new_holder(monkeypatch):
    redis = FakeRedis()
    lease = acquire_slot(redis, "FA1", 1, "killed")  # its worker is SIGKILLed: no release ever
    assert acquire_slot(redis, "FA1", 1, "next") is None
    later = time.time() + LEASE_TTL_S + 1
    monkeypatch.setattr(time, "time", lambda: later)  # one lease TTL on
    assert acquire_slot(redis, "FA1", 1, "next") == lease
    release_slot(redis, lease, "killed")  # the old holder, if it ever came back: not its lease now
    assert acquire_slot(redis, "FA1", 1, "third") is None


def test_a_job_run_again_keeps_its_own_lease():
    redis = FakeRedis()
    lease = acquire_slot(redis, "FA1", 1, "d1")
    assert acquire_slot(redis, "FA1", 1, "d1") == lease


def test_a_busy_partner_costs_no_retry_and_goes_straight_back_on_the_queue():
    j = job(retries_left=3)  # two tries made
    stop_retrying_if_final(j, None, PartnerBusy, PartnerBusy("4 deliveries under way"), None)
    assert j.retries_left == 4  # RQ takes one back: still 3 after this wait
    assert j.retry_intervals[5 - 4] == 0  # RQ requeues a 0 interval rather than scheduling it


def test_retry_after_is_kept_to_the_millisecond_and_never_scheduled_early():
    j = job(retries_left=5)
    j.meta = {}
    j.save_meta = lambda: None
    t0 = time.time()
    stop_retrying_if_final(j, None, RetryableFailure, RetryableFailure("503", retry_after=3), None)
    assert j.retry_intervals[0] == 4  # whole seconds, rounded down by RQ's scheduler: one more
    assert t0 + 3 <= j.meta["not_before"] <= time.time() + 3


def test_a_retry_started_early_waits_out_the_rest(monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    wait_until_due(SimpleNamespace(meta={"not_before": time.time() + 0.6}))
    assert slept and 0.5 < slept[0] <= 0.6
    slept.clear()
    wait_until_due(SimpleNamespace(meta={"not_before": time.time() - 1}))  # due already
    wait_until_due(SimpleNamespace(meta={}))
    assert slept == []


def test_backoff_doubles_with_jitter_and_is_capped():
    waits = backoff(40)
    assert 1 <= waits[0] <= 2 and 3 <= waits[2] <= 5
    assert max(waits) <= 750 and waits[-1] >= 450


def test_a_slot_given_back_while_a_delivery_holds_on_is_taken_without_a_reschedule():
    redis = FakeRedis()
    lease = acquire_slot(redis, "FA1", 1, "first")
    polls: list[int] = []

    def sleep(_s):
        polls.append(1)
        if len(polls) == 3:
            release_slot(redis, lease, "first")

    assert wait_for_slot(redis, "FA1", 1, "second", hold_s=5, sleep=sleep) == lease
    assert len(polls) == 3


def test_a_partner_that_stays_full_is_left_after_the_hold():
    redis = FakeRedis()
    acquire_slot(redis, "FA1", 1, "first")
    assert wait_for_slot(redis, "FA1", 1, "second", hold_s=0.1) is None


def test_a_held_lease_is_renewed_while_the_delivery_runs_and_given_back_after():
    class Renewing(FakeRedis):
        renewed: list[int] = []

        def expire(self, key, seconds):
            self.renewed.append(seconds)
            value, _ = self.values[key]
            self.values[key] = (value, time.time() + seconds)
            return True

    redis = Renewing()
    lease = acquire_slot(redis, "FA1", 1, "slow", ttl_s=2)
    with holding(redis, lease, "slow", ttl_s=2):
        time.sleep(3.5)  # longer than the lease: it must not lapse under a live holder
        assert acquire_slot(redis, "FA1", 1, "other", ttl_s=2) is None
    assert redis.renewed and acquire_slot(redis, "FA1", 1, "other", ttl_s=2) == lease
