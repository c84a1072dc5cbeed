"""Plugins get their configuration from the app's Settings and its one Redis client, once, when
the app is built (``fhirplug_configure``); none reads the environment."""

import pytest

from plugins.audit import Audit
from plugins.intake import Intake
from plugins.routing import Routing
from plugins.tenancy import Tenancy
from proxy.app import create_app
from proxy.config import DEFAULT_PLUGINS, Settings
from tests.support.fake_redis import FakeRedis
from tests.support.fake_store import PUBLIC_BASE, FakeStore

REDIS_USERS = ("delivery_dedup", "profile_validation", "routing", "intake")


def build(**deployment):
    redis = FakeRedis()
    settings = Settings(public_base_url=PUBLIC_BASE, plugins=list(DEFAULT_PLUGINS), auth=False, **deployment)
    app = create_app(settings, store=FakeStore(), redis=redis)
    return app.extensions["fhirplug"]["plugins"], redis


def test_plugins_take_the_deployment_from_settings():
    pm, _ = build(own_ods="FA565", role="hub", tenancy_proxy_checks=False)
    assert pm.get_plugin("routing").own_ods == "FA565"
    assert pm.get_plugin("audit").own_ods == "FA565"
    assert (pm.get_plugin("intake").own_ods, pm.get_plugin("intake").role) == ("FA565", "hub")
    assert pm.get_plugin("tenancy").proxy_checks is False


@pytest.mark.parametrize("name", REDIS_USERS)
def test_plugins_use_the_apps_one_redis_client(name):
    pm, redis = build()
    assert pm.get_plugin(name).redis is redis


def test_the_environment_after_start_changes_nothing(monkeypatch):
    pm, redis = build(own_ods="FA565", role="hub", tenancy_proxy_checks=False)
    monkeypatch.setenv("FHIRPLUG_ODS", "VNE51")
    monkeypatch.setenv("FHIRPLUG_ROLE", "spoke")
    monkeypatch.setenv("FHIRPLUG_TENANCY_PROXY_CHECKS", "on")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/0")
    assert pm.get_plugin("routing").own_ods == pm.get_plugin("audit").own_ods == "FA565"
    assert (pm.get_plugin("intake").own_ods, pm.get_plugin("intake").role) == ("FA565", "hub")
    assert pm.get_plugin("tenancy").proxy_checks is False
    assert all(pm.get_plugin(n).redis is redis for n in REDIS_USERS)


def test_the_environment_at_start_is_not_read_by_plugins(monkeypatch):
    monkeypatch.setenv("FHIRPLUG_ODS", "VNE51")
    monkeypatch.setenv("FHIRPLUG_ROLE", "spoke")
    monkeypatch.setenv("FHIRPLUG_TENANCY_PROXY_CHECKS", "off")
    pm, _ = build()  # Settings given explicitly: their defaults, whatever the environment says
    assert pm.get_plugin("routing").own_ods == ""
    assert pm.get_plugin("intake").role == "both"
    assert pm.get_plugin("tenancy").proxy_checks is True


def test_each_app_configures_its_own_plugins():
    hub, _ = build(own_ods="FA565", role="hub")
    spoke, _ = build(own_ods="VNE51", role="spoke")
    assert hub.get_plugin("intake").role == "hub" and spoke.get_plugin("intake").role == "spoke"
    assert hub.get_plugin("routing").own_ods == "FA565"


def test_values_given_to_a_constructor_win_over_settings():
    own = FakeRedis()
    settings = Settings(own_ods="FA565", role="hub", tenancy_proxy_checks=False)
    intake, routing = Intake(redis=own, own_ods="VNE51", role="spoke"), Routing(redis=own, own_ods="VNE51")
    audit, tenancy = Audit(own_ods="VNE51"), Tenancy(proxy_checks=True)
    for plugin in (intake, routing):
        plugin.fhirplug_configure(settings=settings, redis=FakeRedis())
    for plugin in (audit, tenancy):
        plugin.fhirplug_configure(settings=settings)
    assert (intake.own_ods, intake.role, intake.redis) == ("VNE51", "spoke", own)
    assert (routing.own_ods, routing.redis) == ("VNE51", own)
    assert audit.own_ods == "VNE51" and tenancy.proxy_checks is True


def test_a_plugin_never_configured_has_no_redis_and_says_so():
    with pytest.raises(RuntimeError, match="Intake has no Redis client"):
        _ = Intake().redis
