"""Settings are read from the environment once, at start: the proxy's and the worker's."""

import pytest

from proxy.config import DEFAULT_REDIS_URL, Settings, WorkerSettings, redis_url_from_env

SECRET = "s" * 40
DEPLOYMENT_KEYS = (
    "FHIRPLUG_ODS",
    "FHIRPLUG_ROLE",
    "FHIRPLUG_TENANCY_PROXY_CHECKS",
    "REDIS_URL",
    "FHIRPLUG_STORE_URL",
    "FHIRPLUG_SWEEP_SECONDS",
    "FHIRPLUG_JOB_MONITORING_INTERVAL",
    "FHIRPLUG_WORKER_MAINTENANCE_SECONDS",
    "FHIRPLUG_PARTNER_CONCURRENCY",
)


@pytest.fixture
def env(monkeypatch):
    for key in DEPLOYMENT_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("FHIRPLUG_STORE_SECRET", SECRET)
    return monkeypatch


def test_settings_carry_the_deployment_keys_from_the_environment(env):
    env.setenv("FHIRPLUG_ODS", "FA565")
    env.setenv("FHIRPLUG_ROLE", "hub")
    env.setenv("FHIRPLUG_TENANCY_PROXY_CHECKS", "off")
    env.setenv("REDIS_URL", "redis://redis.example:6380/3")
    s = Settings.from_env()
    assert (s.own_ods, s.role, s.tenancy_proxy_checks) == ("FA565", "hub", False)
    assert s.redis_url == "redis://redis.example:6380/3"


def test_the_deployment_keys_default_as_documented(env):
    s = Settings.from_env()
    assert (s.own_ods, s.role, s.tenancy_proxy_checks) == ("", "both", True)
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert (Settings().own_ods, Settings().role, Settings().tenancy_proxy_checks) == ("", "both", True)


@pytest.mark.parametrize(("value", "on"), [("on", True), ("off", False), ("OFF", False), ("1", True)])
def test_the_proxy_checks_switch(env, value, on):
    env.setenv("FHIRPLUG_TENANCY_PROXY_CHECKS", value)
    assert Settings.from_env().tenancy_proxy_checks is on


def test_a_misspelt_proxy_checks_switch_stops_the_start(env):
    env.setenv("FHIRPLUG_TENANCY_PROXY_CHECKS", "of")
    with pytest.raises(ValueError, match="FHIRPLUG_TENANCY_PROXY_CHECKS must be on or off"):
        Settings.from_env()


def test_the_worker_settings_come_from_the_environment(env):
    env.setenv("REDIS_URL", "redis://redis.example:6380/3")
    env.setenv("FHIRPLUG_STORE_URL", "http://store.example/fhir")
    env.setenv("FHIRPLUG_ODS", "VNE51")
    env.setenv("FHIRPLUG_SWEEP_SECONDS", "3")
    env.setenv("FHIRPLUG_JOB_MONITORING_INTERVAL", "2")
    env.setenv("FHIRPLUG_WORKER_MAINTENANCE_SECONDS", "5")
    env.setenv("FHIRPLUG_PARTNER_CONCURRENCY", "7")
    assert WorkerSettings.from_env() == WorkerSettings(
        redis_url="redis://redis.example:6380/3",
        store_url="http://store.example/fhir",
        own_ods="VNE51",
        sweep_seconds=3.0,
        job_monitoring_interval=2,
        maintenance_seconds=5,
        partner_concurrency=7,
    )


def test_the_worker_settings_default_as_documented(env):
    w = WorkerSettings.from_env()
    assert w == WorkerSettings()
    assert (w.redis_url, w.store_url, w.own_ods) == (DEFAULT_REDIS_URL, "", "")
    assert (w.sweep_seconds, w.job_monitoring_interval, w.maintenance_seconds) == (15.0, 10, 30)
    assert w.partner_concurrency == 4


def test_every_process_reads_redis_url_the_same_way(env):
    assert redis_url_from_env() == DEFAULT_REDIS_URL
    env.setenv("REDIS_URL", "redis://elsewhere:1/2")
    assert redis_url_from_env() == Settings.from_env().redis_url == WorkerSettings.from_env().redis_url
