"""FHIRPLUG_GP_NOTIFY: on by default, read by the proxy (the trigger) and the worker (the repair
sweep) alike, and a switch like the others."""

import pytest

from proxy.config import Settings, WorkerSettings


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv("FHIRPLUG_GP_NOTIFY", raising=False)
    monkeypatch.setenv("FHIRPLUG_STORE_SECRET", "s" * 40)
    return monkeypatch


def test_it_is_on_unless_switched_off(env):
    assert Settings.from_env().gp_notify and WorkerSettings.from_env().gp_notify
    env.setenv("FHIRPLUG_GP_NOTIFY", "off")
    assert not Settings.from_env().gp_notify and not WorkerSettings.from_env().gp_notify


def test_anything_but_on_or_off_is_refused(env):
    env.setenv("FHIRPLUG_GP_NOTIFY", "sometimes")
    with pytest.raises(ValueError, match="FHIRPLUG_GP_NOTIFY"):
        Settings.from_env()
