import pytest

from console.settings import ConsoleSettings


def test_defaults():
    s = ConsoleSettings.from_env({})
    assert s.enabled and s.idle_s == 900 and s.max_s == 8 * 3600 and s.lockout_failures == 5


def test_keys_are_read():
    s = ConsoleSettings.from_env({"FHIRPLUG_CONSOLE": "off", "FHIRPLUG_CONSOLE_IDLE_SECONDS": "120"})
    assert not s.enabled and s.idle_s == 120


@pytest.mark.parametrize(
    "env",
    [
        {"FHIRPLUG_CONSOLE": "maybe"},
        {"FHIRPLUG_CONSOLE_IDLE_SECONDS": "soon"},
        {"FHIRPLUG_CONSOLE_LOCKOUT_FAILURES": "0"},
    ],
)
def test_bad_values_are_refused(env):
    with pytest.raises(ValueError):
        ConsoleSettings.from_env(env)
