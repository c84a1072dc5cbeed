"""The delivery job takes its settings and Redis client from the worker (``configure``, at its
start), not from the environment."""

import json
from dataclasses import asdict

import pytest

from forwarding.delivery import Delivery, DeliveryKind
from forwarding.policy import PartnerBusy, acquire_slot
from proxy.config import WorkerSettings
from proxy.partners import KEY, Partner
from tests.support.fake_redis import FakeRedis
from worker import delivery


@pytest.fixture
def worker(monkeypatch):
    monkeypatch.setattr(delivery, "_process", delivery._Process())  # this test's worker process
    redis = FakeRedis()
    partner = Partner("FA1", "hub", "http://hub/fhir", "http://hub/oauth2/token", "c", "unused.jwk")
    redis.hset(KEY, "FA1", json.dumps(asdict(partner)))  # no key needed: the job stops before sending
    return redis


def job() -> dict:
    return Delivery("FA1", "POST", "", {"resourceType": "Bundle"}, kind=DeliveryKind.SPOKE_TO_HUB).to_dict()


def test_a_delivery_waits_for_a_slot_under_the_configured_limit(worker):
    delivery.configure(WorkerSettings(partner_concurrency=1), redis=worker)
    assert acquire_slot(worker, "FA1", 1, "other")  # another worker's delivery to FA1 is under way
    with pytest.raises(PartnerBusy, match="1 deliveries to FA1 already under way"):
        delivery.deliver(job())


def test_the_environment_after_start_changes_nothing(worker, monkeypatch):
    delivery.configure(WorkerSettings(partner_concurrency=1), redis=worker)
    monkeypatch.setenv("FHIRPLUG_PARTNER_CONCURRENCY", "9")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/0")
    assert acquire_slot(worker, "FA1", 1, "other")
    with pytest.raises(PartnerBusy, match="1 deliveries to FA1"):
        delivery.deliver(job())


def test_a_job_outside_python_m_worker_reads_the_same_settings_once(monkeypatch):
    monkeypatch.setattr(delivery, "_process", delivery._Process())
    monkeypatch.setenv("FHIRPLUG_PARTNER_CONCURRENCY", "3")
    monkeypatch.setenv("FHIRPLUG_ODS", "VNE51")
    settings, redis = delivery._worker()
    assert (settings.partner_concurrency, settings.own_ods) == (3, "VNE51")
    monkeypatch.setenv("FHIRPLUG_PARTNER_CONCURRENCY", "5")
    assert delivery._worker() == (settings, redis)  # read once: the same settings and client
